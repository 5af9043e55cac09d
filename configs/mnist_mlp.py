"""The paper's MNIST experiment (Sec. 4.1): 2-bit MLP 784-10-10, identity STE.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist
  python train.py --config=configs/mnist_mlp.py --config.estimator=nspsa \
      --config.num_perturbations=100 --workdir=runs/nspsa100

Quantizer: every weight and bias, 2 bits, levels {−2, −1, 0, 1}·α, α fixed per layer at init by
LSQ's rule α = 2·mean|w₀|/√Q_P (bias shares its layer's α); FOGZO/n-SPSA perturb every
parameter with ε = α·ε̄(ste) and p(u) from the implicit-smoothing table.
"""

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = "mlp"
  config.quant = "fixed"
  config.bits = 2
  config.ste = "identity"
  config.quantize_bias = True       # the paper quantizes every parameter of the MLP
  config.quantize_first_last = True
  config.estimator = "fogzo"        # 'ste' | 'fogzo' | 'nspsa'
  config.num_perturbations = 1
  config.beta_min = 0.999
  config.batch_size = 512
  config.learning_rate = 2e-3 * 512 / 32  # the paper's linear scaling from batch 32
  config.weight_decay = 0.01        # AdamW (PyTorch's default; the paper does not state it)
  config.num_epochs = 10
  config.dataset = "mnist"          # 'mnist' | 'fashion_mnist'
  config.normalize = "unit"
  config.chunk_size = 1024
  config.checkpoint_every_steps = 200
  return config
