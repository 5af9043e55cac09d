"""fogzo_jax: First-Order-Guided Zeroth-Order gradient descent (FOGZO) in JAX.

``import fogzo_jax as fz``; the public API is ``fz.fogzo``, ``fz.nspsa``, ``fz.linear_beta``,
``fz.implicit_smoothing`` and the quantizers in ``fz.quant``; ``fz.gradient_noise`` is a control
of ours (STE gradient plus noise, what ``fz.fogzo(difference="ste_linear")`` reduces to).
"""

from fogzo_jax import quant
from fogzo_jax.estimators import (FogzoState, NSpsaState, ZerothOrderState, fogzo,
                                  gradient_noise, nspsa)
from fogzo_jax.perturbations import NOISE_LAWS, SMOOTHING_TABLE, get_noise, implicit_smoothing
from fogzo_jax.schedules import (StartAtState, linear_beta, linear_noise_share,
                                 noise_share_to_beta, start_at)

__version__ = "0.1.0"

__all__ = [
    "FogzoState", "NSpsaState", "ZerothOrderState", "fogzo", "gradient_noise", "nspsa",
    "NOISE_LAWS",
    "SMOOTHING_TABLE", "StartAtState", "get_noise", "implicit_smoothing", "linear_beta",
    "linear_noise_share", "noise_share_to_beta", "quant", "start_at",
]
