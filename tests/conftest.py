"""Settings of the whole test run: XLA:CPU compiles faster, and a program compiles once.

Most of the default suite's time on 2 CPU cores is XLA compiling small programs, so before jax
loads (and for the train.py subprocesses, which inherit the environment):

- ``--xla_backend_optimization_level=1`` (XLA's default is 3): LLVM optimises the machine
  code less. The HLO passes (fusion, layout) are unchanged. Measured here (jax 0.10.2, 2 cores):
  a tiny ResNet-18 FOGZO step compiles in half the time (44 → 22 s for its test), MNIST MLP
  steps run as fast, and train.py runs end with bit-identical parameters (the same
  ``params_sha256``) as at level 3. Level 0 compiles as fast but runs slower (the resume
  config's 80 FOGZO steps and evaluations: 30.8 s against 16.5 s) and changes the last bits.
- a persistent compilation cache in a temporary folder of this run: the resume and CLI tests
  run the same program in several processes (a run, its kill, its resume), which then compile
  it once. The folder is new each run and removed at its end, so nothing is reused across runs.

A test that sets XLA_FLAGS for a subprocess appends to ``os.environ["XLA_FLAGS"]``. With
pytest-xdist (pyproject's ``-n auto``) the workers inherit both settings, each with a cache
folder of its own.

The default suite on this project's 2-core machine (jax 0.10.2, alone, wall time): 17 min 56 s
as one process without these settings, 14 min 16 s with them, 8 min 53 s with them on two
xdist workers (clean-clone CI: 7 min 53 s and 8 min 43 s of pytest, 8 min 50 s and 9 min 35 s
with the fresh venv and install).
"""

import os
import shutil
import tempfile

_OWNER = "FOGZO_JAX_TESTS_XLA_CACHE"  # set by the process that made the folder (xdist's main)

if _OWNER not in os.environ:  # the main process; xdist's workers inherit both from it
  os.environ["XLA_FLAGS"] = " ".join(
      filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=1"]))
  os.environ[_OWNER] = tempfile.mkdtemp(prefix="fogzo_jax_tests_xla_cache_")
# A folder per xdist worker: jax writes cache entries in place, so a process reading an entry
# that another is writing would recompile with a warning. Within a worker the test process and
# its train.py subprocesses run one after the other; across workers little is shared.
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
    os.environ[_OWNER], os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.makedirs(os.environ["JAX_COMPILATION_CACHE_DIR"], exist_ok=True)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if not hasattr(session.config, "workerinput"):  # the main process, after its workers
    shutil.rmtree(os.environ[_OWNER], ignore_errors=True)
