"""Argument checks shared by the constructors (one message that names the argument).

Each raises ``ValueError("<name> must be …; got …")``; ``fogzo_jax.train.config.validate``
prefixes the config section, so a bad ``--config.estimator.beta_min`` reads
"config.estimator.beta_min must be …".
"""

from __future__ import annotations

import math


def choice(name: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def number(name: str, value, kind=float, low=None, high=None, low_open: bool = False,
           allow_none: bool = False) -> None:
  """An int (``kind=int``) or a finite real (``kind=float``, ints accepted) in the bounds."""
  if value is None and allow_none:
    return
  types = (int,) if kind is int else (int, float)
  ok = isinstance(value, types) and not isinstance(value, bool) and math.isfinite(value)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value <= high
  if not ok:
    bounds = []
    if low is not None:
      bounds.append(f"{'>' if low_open else '≥'} {low}")
    if high is not None:
      bounds.append(f"≤ {high}")
    what = "an integer" if kind is int else "a finite number"
    none = "None or " if allow_none else ""
    raise ValueError(f"{name} must be {none}{what}{' ' if bounds else ''}{' and '.join(bounds)}"
                     f"; got {value!r}")


def boolean(name: str, value) -> None:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be True or False; got {value!r}")


def string(name: str, value, what: str = "") -> None:
  if not isinstance(value, str):
    raise ValueError(f"{name} must be a string{' ' + what if what else ''}; got {value!r}")
