"""Models, built by name from a registry: ``get_model(name, **kwargs)``."""

from fogzo_jax.models.mlp import MLP

MODELS = {"mlp": MLP}


def get_model(name: str, **kwargs):
  if name not in MODELS:
    raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}; got {name!r}")
  return MODELS[name](**kwargs)
