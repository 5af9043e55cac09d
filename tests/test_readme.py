"""The README's API example runs and trains (loss well below chance, ln 3 = 1.10)."""

import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_example_runs_and_learns():
  text = open(README).read()
  block = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S).group(1)
  assert "optax.chain(" in block and "fz.fogzo(" in block
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used
  loss = float(re.search(r"loss ([\d.]+)", out.getvalue()).group(1))
  assert loss < 0.6, out.getvalue()


def test_readme_commands():
  text = open(README).read()
  assert "pip install -e . && python train.py --config=configs/mnist_mlp.py" in text
  assert 'pip install -e ".[test]" && pytest' in text
