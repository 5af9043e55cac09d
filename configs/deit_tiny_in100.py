"""DeiT-Tiny on ImageNet-100, 2-bit fixed-scale weights (the paper's Table 1 row).

DeiT recipe: AdamW lr 5e-4·batch/512, weight decay 0.05, warm-up 5 epochs, cosine,
RandAugment(2, 9) + Mixup/CutMix + random erasing + label smoothing 0.1; patch and head full
precision. No EMA, no distillation token, no stochastic depth.

  python train.py --config=configs/deit_tiny_in100.py --config.data.data_dir=/data/imagenet \
      --workdir=runs/deit_tiny_in100
  # reduced scale, offline (patch 4 on 28-px Fashion-MNIST):
  python train.py --config=configs/deit_tiny_in100.py --config.data.name=fashion_mnist \
      --workdir=runs/deit_fashion
"""

import ml_collections

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = ml_collections.ConfigDict(dict(
      name="deit_tiny", hidden=192, depth=12, heads=3, patch_size=0, quantize_first_last=False,
      dtype="float32", param_dtype="float32"))
  config.quant.update(kind="fixed", bits=2, ste="identity")
  # ± forwards one after the other: vmapped, the convolutional patch embedding under FSDP
  # costs 2.2-2.7x STE's FLOPs per device instead of 1.67 (bench/cost_plan.py, 8 devices).
  config.estimator.update(kind="fogzo", beta_min=0.999, evaluation="sequential")
  config.optimizer.update(learning_rate=5e-4 * 256 / 512, weight_decay=0.05,
                          warmup_steps=5 * 500)
  config.data.update(name="imagenet100", augment="deit", mixup=True, normalize="imagenet",
                     eval_train=False, batch_size=256, eval_batch_size=500)
  config.label_smoothing = 0.1
  config.num_epochs = 300
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 50
  return config
