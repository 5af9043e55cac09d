"""Quantized Flax layers, and the FOGZO radius ε and mask they imply.

A ``QuantSpec`` says how a model quantizes: ``kind`` ∈ {"none", "fixed", "lsq", "quest"}, ``bits``,
the STE kind, and whether activations (layer inputs) are quantized too. ``QuantDense`` and
``QuantConv`` read it:

| kind  | weight step α                                 | trained? | weight backward          |
|-------|-----------------------------------------------|----------|--------------------------|
| fixed | LSQ init 2·mean|w₀|/√Q_P, then frozen         | no       | ``ste`` (any kind)       |
| lsq   | learned ``<name>_scale`` param, LSQ init      | yes      | identity, LSQ's ∂/∂s     |
| quest | 2·c_b·RMS(Hw)/(2^b−1) per output column       | no (fn)  | QuEST trust mask         |

Every quantized weight gets an entry under its own path in the ``quant`` variable collection
(its step size at init): that entry is what marks the leaf as quantized. FOGZO perturbs exactly
those leaves (``quantized_mask``) with ε = α·ε̄(ste) (``epsilon_from_params``, α read at every
update: frozen for fixed, the current learned value for LSQ, recomputed from w for QuEST); the
other parameters (biases of full-precision layers, norms, learned scales, embeddings of
unquantized layers) keep their ordinary gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fogzo_jax import perturbations
from fogzo_jax.quant import fixed as fixed_lib
from fogzo_jax.quant import lsq as lsq_lib
from fogzo_jax.quant import quest as quest_lib
from fogzo_jax.quant.ste import STE_KINDS

STEP_SUFFIX = "_scale"  # LSQ's learned step of weight or input <name> is the parameter <name>_scale

QUANT_KINDS = ("none", "fixed", "lsq", "quest")


@dataclasses.dataclass(frozen=True)
class QuantSpec:
  """How a model's layers are quantized (hashable: a Flax module attribute).

  Attributes:
    kind: "none" | "fixed" | "lsq" | "quest".
    bits: weight (and activation) bits.
    ste: backward of the fixed quantizer ("identity" | "hardtanh" | "tanh" | "approxsign");
      LSQ and QuEST have their own backward and need "identity" (ε̄ of the identity STE).
    activations: also quantize each quantized layer's input (W+A).
    bias: also quantize biases with the kernel's step (the paper's MNIST MLP).
    per_channel: fixed / LSQ weight steps per output channel instead of per tensor (QuEST is
      always per output column).
  """
  kind: str = "fixed"
  bits: int = 2
  ste: str = "identity"
  activations: bool = False
  bias: bool = False
  per_channel: bool = False

  def __post_init__(self):
    if self.kind not in QUANT_KINDS:
      raise ValueError(f"quant must be one of {', '.join(map(repr, QUANT_KINDS))}; "
                       f"got {self.kind!r}")
    if self.ste not in STE_KINDS:
      raise ValueError(f"ste must be one of {', '.join(map(repr, STE_KINDS))}; got {self.ste!r}")
    if self.kind in ("lsq", "quest") and self.ste != "identity":
      raise ValueError(f"ste must be 'identity' with quant={self.kind!r} (its backward is its "
                       f"own); got {self.ste!r}")
    if self.kind == "quest" and self.bits not in quest_lib.GAUSSIAN_CLIP:
      raise ValueError(f"bits must be one of {sorted(quest_lib.GAUSSIAN_CLIP)} with "
                       f"quant='quest'; got {self.bits!r}")
    if self.kind == "quest" and self.bias:
      raise ValueError("quant='quest' does not quantize biases (bias must be False)")
    fixed_lib.levels(self.bits)  # raises for bad bits

  @property
  def enabled(self) -> bool:
    return self.kind != "none"


NO_QUANT = QuantSpec(kind="none")


def _partitioned(init, axes):
  """``init`` annotated with logical axis names (``nn.with_logical_partitioning``) when given;
  the training stack maps them to mesh axes (``train.sharding``)."""
  return init if axes is None else nn.with_logical_partitioning(init, axes)


def _quantize_weight(module: nn.Module, name: str, w: jax.Array, spec: QuantSpec,
                     share: Optional[str] = None) -> jax.Array:
  """Fixed or LSQ fake quantization of parameter ``name``.

  Its step has shape [1, …, 1] (per tensor) or [1, …, 1, out] (per channel). ``share`` names the
  kernel [..., in, out] whose step a bias [..., out] uses (its "in" axis dropped).
  """
  def init():
    return jnp.reshape(lsq_lib.lsq_init_step(w, spec.bits, per_channel=spec.per_channel),
                       (1,) * (w.ndim - 1) + (-1,))

  def shared(step):  # kernel step [..., 1, out] → bias step [..., out]
    return jnp.squeeze(step, axis=-2)

  if spec.kind == "fixed":
    if share:
      alpha = shared(module.get_variable("quant", share))
    else:
      alpha = init()
    alpha = module.variable("quant", name, lambda: jnp.array(alpha, copy=True)).value
    return fixed_lib.quantize(w, spec.bits, jax.lax.stop_gradient(alpha), spec.ste)
  if spec.kind == "lsq":
    if share:
      step = shared(module.get_variable("params", share + STEP_SUFFIX))
    else:
      step = module.param(name + STEP_SUFFIX, lambda _: init())
    module.variable("quant", name, lambda: jnp.abs(step))
    return lsq_lib.lsq_quantize(w, step, spec.bits, num_elements=w.size // step.size)
  raise ValueError(f"no weight quantizer for quant={spec.kind!r}")


def _quantize_input(module: nn.Module, x: jax.Array, spec: QuantSpec, signed: bool):
  """Fixed or LSQ quantization of a layer input (per-tensor step, LSQ init on the init batch)."""
  if spec.kind == "fixed":
    alpha = module.variable("quant", "input",
                            lambda: lsq_lib.lsq_init_step(x, spec.bits, signed)).value
    return fixed_lib.quantize(x, spec.bits, jax.lax.stop_gradient(alpha), spec.ste, signed=signed)
  step = module.param("input" + STEP_SUFFIX,
                      lambda _: lsq_lib.lsq_init_step(x, spec.bits, signed))
  return lsq_lib.lsq_quantize(x, step, spec.bits, signed, num_elements=x.shape[-1])


class QuantDense(nn.Module):
  """Dense layer [..., in] → [..., features] with quantized kernel (and optionally input/bias).

  With ``spec.kind == "quest"`` the product is computed in the Hadamard basis,
  y = Q(xH)·Q(HᵀW) (+ b), H block-diagonal along ``in``.
  """
  features: int
  spec: QuantSpec = NO_QUANT
  use_bias: bool = True
  act_signed: bool = True       # False: input is post-ReLU, use unsigned activation levels
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  kernel_axes: Optional[tuple] = None  # logical axis names of the kernel, e.g. ("embed", "mlp")

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", _partitioned(self.kernel_init, self.kernel_axes),
                        (x.shape[-1], self.features), self.param_dtype)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    spec = self.spec
    if spec.kind == "quest":
      self.variable("quant", "kernel", lambda: quest_lib.quest_weight_step(kernel, spec.bits))
      kernel = quest_lib.quest_quantize(quest_lib.rotate(kernel, axis=-2), spec.bits, axis=-2)
      x = quest_lib.rotate(x.astype(self.dtype), axis=-1)
      if spec.activations:
        x = quest_lib.quest_quantize(x, spec.bits, axis=-1)
    elif spec.enabled:
      if spec.activations:
        x = _quantize_input(self, x, spec, self.act_signed)
      kernel = _quantize_weight(self, "kernel", kernel, spec)
      if bias is not None and spec.bias:
        bias = _quantize_weight(self, "bias", bias, spec, share="kernel")
    # jax.lax.dot_general (as nn.Dense): libraries that intercept it, e.g. Qwix, see this layer.
    y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                            (((x.ndim - 1,), (0,)), ((), ())))
    return y if bias is None else y + bias.astype(self.dtype)


class QuantConv(nn.Module):
  """2-D convolution (NHWC, kernel [kh, kw, in, out]) with a fixed or LSQ quantized kernel."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  spec: QuantSpec = NO_QUANT
  use_bias: bool = False
  act_signed: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.variance_scaling(
      2.0, "fan_out", "normal")
  kernel_axes: Optional[tuple] = None  # logical axis names, e.g. (None, None, "embed", "mlp")

  @nn.compact
  def __call__(self, x):
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", _partitioned(self.kernel_init, self.kernel_axes), shape,
                        self.param_dtype)
    spec = self.spec
    if spec.kind == "quest":
      raise ValueError("quant='quest' is implemented for dense layers (LLaMA, ViT), not for "
                       "convolutions; use quant='fixed' or 'lsq' for ResNets")
    if spec.enabled:
      if spec.activations:
        x = _quantize_input(self, x, spec, self.act_signed)
      kernel = _quantize_weight(self, "kernel", kernel, spec)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), self.strides, self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         self.param_dtype).astype(self.dtype)
    return y


def _walk(params, quant, leaf_fn):
  """Maps ``leaf_fn(layer_params, name, quant_entry_or_None)`` over params, keeping structure."""
  out = {}
  for name, value in params.items():
    q = quant.get(name) if isinstance(quant, dict) else None
    if isinstance(value, dict):
      out[name] = _walk(value, q if isinstance(q, dict) else {}, leaf_fn)
    else:
      out[name] = leaf_fn(params, name, None if isinstance(q, dict) else q)
  return out


def step_size_mask(params):
  """Pytree of bools like ``params``: True for LSQ's learned step sizes (``<name>_scale``)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], "key", "")).endswith(STEP_SUFFIX), params)


def quantized_mask(params, quant):
  """Pytree of bools like ``params``: True for the quantized (perturbed) weights."""
  return _walk(params, quant, lambda _, __, q: q is not None)


def weight_step_sizes(params, quant, spec: QuantSpec):
  """The current step α of every quantized weight (broadcastable to it); None elsewhere."""
  def step(layer, name, q):
    if q is None:
      return None
    if spec.kind == "fixed":
      return q
    if spec.kind == "lsq":
      if name + STEP_SUFFIX in layer:
        return jnp.abs(layer[name + STEP_SUFFIX])
      # a bias sharing the kernel's step
      return jnp.squeeze(jnp.abs(layer["kernel" + STEP_SUFFIX]), axis=-2)

    return quest_lib.quest_weight_step(layer[name], spec.bits)
  return _walk(params, quant, step)


def epsilon_from_params(params, quant, spec: QuantSpec):
  """ε = α·ε̄(ste) on quantized weights (1.0 on the others, which the mask leaves unperturbed).

  Pass ``functools.partial(epsilon_from_params, quant=quant, spec=spec)`` as FOGZO's callable
  ``epsilon`` so that ε follows a learned LSQ step or the QuEST RMS at every update.
  """
  eps_bar = perturbations.implicit_smoothing(spec.ste).eps_bar
  steps = weight_step_sizes(params, quant, spec)
  return jax.tree.map(lambda p, s: jnp.float32(1.0) if s is None else s * eps_bar, params,
                      steps, is_leaf=lambda x: x is None)
