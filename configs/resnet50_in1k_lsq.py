"""ResNet-50 on ImageNet-1k with 2-bit LSQ weights (the paper's LSQ table).

LSQ recipe (Esser et al.; pytorch/examples imagenet): learned step sizes with gradient scale
1/√(N·Q_P), first and last layers full precision, random-resized crop + flip, weight decay 1e-4,
90 epochs; AdamW + cosine as the paper says, with lr 1e-3 and 2500 warm-up steps our choice. W+A
by ``--config.quant.activations=True``.

  python train.py --config=configs/resnet50_in1k_lsq.py --config.data.data_dir=/data/tfds \
      --workdir=runs/r50_lsq
"""

import ml_collections

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = ml_collections.ConfigDict(dict(
      name="resnet50", width=64, quantize_first_last=False, dtype="float32",
      param_dtype="float32"))
  config.quant.update(kind="lsq", bits=2, ste="identity")
  config.estimator.update(kind="fogzo", beta_min=0.999, evaluation="sequential")
  config.optimizer.update(learning_rate=1e-3, weight_decay=1e-4, warmup_steps=2500)
  config.data.update(name="imagenet2012",   # tfds imagenet2012 prepared in data_dir
                     augment="crop_flip", normalize="imagenet", eval_train=False,
                     batch_size=256, eval_batch_size=500)
  config.num_epochs = 90
  config.checkpoint_every_steps = 2000
  config.log_every_steps = 100
  return config
