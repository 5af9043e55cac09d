"""The package as a user meets it: a lean import, and the examples in the public docstrings."""

import doctest
import subprocess
import sys

import pytest

import fogzo_jax
from fogzo_jax import estimators, perturbations, schedules
from fogzo_jax.quant import fixed, ste

TRAINING_STACK = ("flax", "orbax", "grain", "tensorflow_datasets", "tensorboardX",
                  "matplotlib", "sentencepiece", "ml_collections", "tqdm", "PIL", "tensorflow",
                  "chex", "scipy")


def test_import_needs_only_jax_and_optax():
  code = ("import sys, fogzo_jax as fz; fz.fogzo(); fz.quant.quantize; "
          f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAINING_STACK!r})))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[]", f"import fogzo_jax loaded {out.stdout.strip()}"


def test_flax_layers_load_on_first_use():
  assert fogzo_jax.quant.QuantDense.__name__ == "QuantDense"
  assert "QuantSpec" in dir(fogzo_jax.quant)
  public = fogzo_jax.quant.__all__  # the public names, the lazy layers' included
  assert "QuantSpec" in public and "quantize" in public
  assert [name for name in public if not hasattr(fogzo_jax.quant, name)] == []
  with pytest.raises(AttributeError):
    fogzo_jax.quant.NoSuchLayer  # pylint: disable=pointless-statement


@pytest.mark.parametrize("module", [estimators, schedules, perturbations, fixed, ste],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0


def test_every_public_function_has_an_example():
  for fn in (fogzo_jax.fogzo, fogzo_jax.nspsa, fogzo_jax.linear_beta, fogzo_jax.start_at,
             fogzo_jax.linear_noise_share, fogzo_jax.noise_share_to_beta,
             fogzo_jax.implicit_smoothing, fogzo_jax.quant.quantize, fogzo_jax.quant.round_ste,
             fogzo_jax.quant.sign_ste):
    assert ">>> " in (fn.__doc__ or ""), fn.__name__
