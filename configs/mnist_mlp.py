"""The paper's MNIST experiment (Sec. 4.1): 2-bit MLP 784-10-10, identity STE.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist
  python train.py --config=configs/mnist_mlp.py --config.estimator=nspsa \
      --config.num_perturbations=100 --workdir=runs/nspsa100

Quantizer: every weight and bias, 2 bits, levels {−2, −1, 0, 1}·α, α fixed per layer at init by
LSQ's rule α = 2·mean|w₀|/√Q_P (bias shares its layer's α); FOGZO/n-SPSA perturb every
parameter with ε = α·ε̄(ste) and p(u) from the implicit-smoothing table.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = "mlp"
  config.estimator = "fogzo"        # 'ste' | 'fogzo' | 'nspsa'
  config.num_perturbations = 1      # n
  config.beta_min = 0.999           # β decays linearly from 1 to beta_min over training
  config.g_hat_norm = "unit"        # 'unit': ĝ = g/‖g‖ (paper as reconstructed); 'rms': √d·g/‖g‖
  config.fogzo_start_fraction = 0.0  # > 0: plain STE for this fraction of steps, then FOGZO
  config.ste = "identity"           # 'identity' | 'hardtanh' | 'tanh' | 'approxsign'
  config.bits = 2
  config.batch_size = 512
  config.learning_rate = 2e-3 * 512 / 32  # the paper's linear scaling from batch 32
  config.weight_decay = 0.01        # AdamW (PyTorch's default; the paper does not state it)
  config.num_epochs = 10
  config.num_train_steps = 0        # > 0 overrides num_epochs
  config.seed = 0
  config.dataset = "mnist"          # 'mnist' | 'fashion_mnist'
  config.data_dir = ""              # folder with the IDX files; '' = tfds or the shipped copy
  config.data_source = "auto"       # 'auto' | 'idx' | 'tfds' | 'shipped'
  config.chunk_size = 1024          # perturbations vmapped at once (0 = all, capped at 2048)
  config.log_every_steps = 20       # progress bar / NaN check interval
  config.eval_every_steps = 0       # 0: evaluate at the end of every epoch
  config.checkpoint_every_steps = 200  # 0: only at the end
  config.keep_checkpoints = 2
  config.distributed = False        # True: jax.distributed.initialize() (multi-host)
  return config
