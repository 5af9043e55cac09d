"""Every model: parameter counts, shapes, and one FOGZO step at a tiny width (STE's step: the MLP
 here, every model in the slow suite)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fogzo_jax import models
from fogzo_jax.train import config as config_lib, loop, sharding


def count(name, shape, dtype=jnp.float32, **kwargs):
  model = models.get_model(name, **kwargs)
  shapes = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0),
                                                      jnp.zeros(shape, dtype))))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("deit_tiny", 5_717_416),
    ("deit_small", 22_050_664)])
def test_reference_parameter_counts(name, expected):
  """Unquantized, 1000 classes, 224×224×3: the torchvision / timm counts."""
  assert count(name, (1, 224, 224, 3)) == expected


TINY = {  # one block per ResNet stage: every code path, a fraction of the compile time
    "mlp": dict(features=(16, 10)),
    "resnet18": dict(width=4, stage_sizes=(1, 1, 1, 1)),
    "resnet50": dict(width=2, stage_sizes=(1, 1, 1, 1)),
    "deit_tiny": dict(hidden=16, depth=2, heads=2),
    "deit_small": dict(hidden=16, depth=2, heads=2),
    "llama_9m": dict(dim=32, layers=2, heads=2),
}


def tiny_config(name, estimator, quant="fixed"):
  config = config_lib.default_config()
  config.model = {"name": name, **TINY[name]}
  config.estimator.update(kind=estimator, num_perturbations=2)
  if name.startswith("resnet"):  # as the ResNet configs: the ± forwards one after the other
    config.estimator.evaluation = "sequential"
  config.quant.kind = quant
  return config


def build(config, task, batch, total_steps=10):
  """Model, optimizer and the initial state on one device, as train_and_evaluate builds them."""
  model = loop.make_model(config, {"vocab_size": 257} if task == "lm" else {"num_classes": 10})
  tx = loop.make_tx(config, total_steps)
  state, _ = loop.create_train_state(model, tx, task, batch, jax.random.key(0),
                                     sharding.make_mesh(fsdp=False))
  return model, tx, state


def tiny_batch(name):
  rng = np.random.default_rng(0)
  if name.startswith("llama"):
    tokens = rng.integers(0, 257, (4, 17)).astype(np.int32)
    return "lm", {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                  "segment_ids": np.ones((4, 16), np.int32), "weights": np.ones((4, 16), np.float32)}
  return "image", {"image": rng.random((4, 28, 28, 1), np.float32),
                   "label": rng.integers(0, 10, 4).astype(np.int32)}


# ResNet-50 and DeiT-Small repeat code paths of ResNet-18 (plus the bottleneck block) and
# DeiT-Tiny at these sizes, and a FOGZO step runs the STE forward and backward before its
# perturbed forwards: those, and STE's step of every model but the MLP, are in the slow suite
# (`pytest -m slow`) to keep the default run short (each is a 20-40 s compile on 2 cores).
ONE_STEP = [pytest.param(name, estimator, marks=pytest.mark.slow)
            if name in ("resnet50", "deit_small") or (estimator == "ste" and name != "mlp")
            else (name, estimator) for estimator in ("ste", "fogzo") for name in TINY]


@functools.cache  # one compilation of each step for the tests below
def one_step(name, estimator):
  """(model, task, batch, state before, state after, metrics) of one jitted train step."""
  config = tiny_config(name, estimator, quant="lsq" if name == "deit_tiny" else "fixed")
  task, batch = tiny_batch(name)
  model, tx, state = build(config, task, batch)
  step = jax.jit(functools.partial(loop.train_step, model=model, tx=tx, task=task,
                                   estimator=estimator))
  return (model, task, batch, state, *step(state, batch))


@pytest.mark.parametrize("name, estimator", ONE_STEP)
def test_one_step_of_every_model(name, estimator):
  model, task, batch, state, new, metrics = one_step(name, estimator)
  assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert all(jax.tree.leaves(changed)) or name != "mlp"
  out = model.apply({"params": new.params, "quant": new.quant, "batch_stats": new.batch_stats},
                    *((batch["inputs"],) if task == "lm" else (batch["image"],)), train=False)
  assert out.shape == ((4, 16, 257) if task == "lm" else (4, 10))


def test_batchnorm_statistics_come_from_the_ste_forward_only():
  """The perturbed forwards of FOGZO run BatchNorm in train mode but do not update statistics."""
  model, _, batch, state, new, _ = one_step("resnet18", "fogzo")  # 2 perturbations: 4 forwards
  _, updated = model.apply({"params": state.params, "quant": state.quant,
                            "batch_stats": state.batch_stats}, batch["image"], train=True,
                           mutable=["batch_stats"])
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(updated["batch_stats"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new.batch_stats)
  assert any(jax.tree.leaves(moved))


def test_unknown_model_option():
  with pytest.raises(ValueError, match="model 'resnet18' has no option 'depth'"):
    models.get_model("resnet18", depth=3)
