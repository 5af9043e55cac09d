"""DeiT-Tiny on ImageNet-100, 2-bit fixed-scale weights (the paper's Table 1 row).

DeiT recipe: AdamW lr 5e-4·batch/512, weight decay 0.05, warm-up 5 epochs, cosine,
RandAugment(2, 9) + Mixup/CutMix + random erasing + label smoothing 0.1; patch and head full
precision. No EMA, no distillation token, no stochastic depth.

  python train.py --config=configs/deit_tiny_in100.py --config.data_dir=/data/imagenet \
      --workdir=runs/deit_tiny_in100
  # reduced scale, offline (patch 4 on 28-px Fashion-MNIST):
  python train.py --config=configs/deit_tiny_in100.py --config.dataset=fashion_mnist \
      --workdir=runs/deit_fashion
"""

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = "deit_tiny"
  config.quant = "fixed"
  config.bits = 2
  config.ste = "identity"
  config.estimator = "fogzo"
  config.beta_min = 0.999
  config.dataset = "imagenet100"
  config.augment = "deit"
  config.mixup = True
  config.label_smoothing = 0.1
  config.normalize = "imagenet"
  config.eval_train = False
  config.batch_size = 256
  config.learning_rate = 5e-4 * 256 / 512
  config.weight_decay = 0.05
  config.warmup_steps = 5 * 500
  config.num_epochs = 300
  config.eval_batch_size = 500
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 50
  return config
