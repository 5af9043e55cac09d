"""DeiT-Small on ImageNet-1k with 2-bit LSQ weights (the paper's LSQ table).

DeiT recipe as in deit_tiny_in100.py, batch 512 (linear LR scaling), 300 epochs.

  python train.py --config=configs/deit_small_in1k_lsq.py --config.data.data_dir=/data/tfds \
      --workdir=runs/deit_small_lsq
"""

import ml_collections

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = ml_collections.ConfigDict(dict(
      name="deit_small", hidden=384, depth=12, heads=6, patch_size=0, quantize_first_last=False,
      dtype="float32", param_dtype="float32"))
  config.quant.update(kind="lsq", bits=2, ste="identity")
  # ± forwards one after the other: vmapped, the convolutional patch embedding under FSDP
  # costs 2.2-2.7x STE's FLOPs per device instead of 1.67 (bench/cost_plan.py, 8 devices).
  config.estimator.update(kind="fogzo", beta_min=0.999, evaluation="sequential")
  config.optimizer.update(learning_rate=5e-4, weight_decay=0.05, warmup_steps=5 * 2500)
  config.data.update(name="imagenet2012", augment="deit", mixup=True, normalize="imagenet",
                     eval_train=False, batch_size=512, eval_batch_size=500)
  config.label_smoothing = 0.1
  config.num_epochs = 300
  config.checkpoint_every_steps = 2000
  config.log_every_steps = 100
  return config
