"""ResNet-50 on ImageNet-1k with 2-bit LSQ weights (the paper's LSQ table).

LSQ recipe (Esser et al.; pytorch/examples imagenet): learned step sizes with gradient scale
1/√(N·Q_P), first and last layers full precision, random-resized crop + flip, weight decay 1e-4,
90 epochs; AdamW + cosine as the paper says, with lr 1e-3 and 2500 warm-up steps our choice. W+A
by ``--config.quantize_activations=True``.

  python train.py --config=configs/resnet50_in1k_lsq.py --config.data_dir=/data/tfds \
      --workdir=runs/r50_lsq
"""

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = "resnet50"
  config.quant = "lsq"
  config.bits = 2
  config.ste = "identity"
  config.estimator = "fogzo"
  config.evaluation = "sequential"  # ± forwards one after the other: 1.8× faster than vmap for
                                    # convolutions on XLA:CPU (docs/benchmarks.md)
  config.beta_min = 0.999
  config.dataset = "imagenet2012"   # tfds imagenet2012 prepared in data_dir (or 'imagefolder')
  config.augment = "crop_flip"
  config.normalize = "imagenet"
  config.eval_train = False
  config.batch_size = 256
  config.learning_rate = 1e-3
  config.weight_decay = 1e-4
  config.warmup_steps = 2500
  config.num_epochs = 90
  config.eval_batch_size = 500
  config.checkpoint_every_steps = 2000
  config.log_every_steps = 100
  return config
