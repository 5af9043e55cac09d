"""DeiT-Small on ImageNet-1k with 2-bit LSQ weights (the paper's LSQ table).

DeiT recipe as in deit_tiny_in100.py, batch 512 (linear LR scaling), 300 epochs.

  python train.py --config=configs/deit_small_in1k_lsq.py --config.data_dir=/data/tfds \
      --workdir=runs/deit_small_lsq
"""

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = "deit_small"
  config.quant = "lsq"
  config.bits = 2
  config.ste = "identity"
  config.estimator = "fogzo"
  config.beta_min = 0.999
  config.dataset = "imagenet2012"
  config.augment = "deit"
  config.mixup = True
  config.label_smoothing = 0.1
  config.normalize = "imagenet"
  config.eval_train = False
  config.batch_size = 512
  config.learning_rate = 5e-4
  config.weight_decay = 0.05
  config.warmup_steps = 5 * 2500
  config.num_epochs = 300
  config.eval_batch_size = 500
  config.checkpoint_every_steps = 2000
  config.log_every_steps = 100
  return config
