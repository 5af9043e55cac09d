"""The paper's MNIST experiment (Sec. 4.1): 2-bit MLP 784-10-10, identity STE.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist
  python train.py --config=configs/mnist_mlp.py --config.optimizer.learning_rate=0.032 \
      --workdir=runs/mnist_paper          # the paper's exact setting (lr 2e-3·512/32)
  python train.py --config=configs/mnist_mlp.py --config.estimator.kind=nspsa \
      --config.estimator.num_perturbations=100 --workdir=runs/nspsa100

Learning rate: 6e-3, STE's best on seeds 0-2 of the study (docs/results/where_fogzo_helps.md;
the same rate for every estimator there).

Quantizer: every weight and bias, 2 bits, levels {−2, −1, 0, 1}·α, α fixed per layer at init by
LSQ's rule α = 2·mean|w₀|/√Q_P (bias shares its layer's α); FOGZO/n-SPSA perturb every
parameter with ε = α·ε̄(ste) and p(u) from the implicit-smoothing table.
"""

import ml_collections

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = ml_collections.ConfigDict(dict(name="mlp", features=(10, 10)))
  config.quant.update(kind="fixed", bits=2, ste="identity",
                      bias=True)        # the paper quantizes every parameter of the MLP
  config.estimator.update(kind="fogzo", num_perturbations=1, beta_min=0.999, chunk_size=1024)
  config.optimizer.update(learning_rate=6e-3,  # the paper: 2e-3·512/32 = 0.032 (docstring)
                          weight_decay=0.01)  # AdamW (PyTorch's default; not stated in the paper)
  config.data.update(name="mnist", batch_size=512, normalize="unit")  # or 'fashion_mnist'
  config.num_epochs = 10
  config.checkpoint_every_steps = 200
  return config
