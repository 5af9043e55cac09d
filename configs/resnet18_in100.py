"""ResNet-18 on ImageNet-100, 2-bit fixed-scale weights (the paper's Table 1 row).

From the recipe (pytorch/examples imagenet, as the LSQ paper): batch 256, 90 epochs,
random-resized crop + flip, 224 px, first and last layers full precision; AdamW + cosine as the
paper says. Our choices, not the paper's (its values are not in our notes): lr 1e-3, weight decay
0.05, 500 warm-up steps. ImageNet-100 = the CMC class list applied to an ImageFolder tree.

  python train.py --config=configs/resnet18_in100.py --config.data_dir=/data/imagenet \
      --workdir=runs/r18_in100
  # reduced scale, offline (28-px Fashion-MNIST, small-image stem):
  python train.py --config=configs/resnet18_in100.py --config.dataset=fashion_mnist \
      --workdir=runs/r18_fashion
"""

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = "resnet18"
  config.quant = "fixed"            # 2-bit fixed-α weights; --config.ste=tanh for the tanh row
  config.bits = 2
  config.ste = "identity"
  config.estimator = "fogzo"
  config.evaluation = "sequential"  # ± forwards one after the other: 1.8× faster than vmap for
                                    # convolutions on XLA:CPU (docs/benchmarks.md)
  config.beta_min = 0.999
  config.dataset = "imagenet100"
  config.augment = "crop_flip"
  config.normalize = "imagenet"
  config.eval_train = False
  config.batch_size = 256
  config.learning_rate = 1e-3 * 256 / 256  # AdamW, linear scaling from lr 1e-3 at batch 256
  config.weight_decay = 0.05
  config.warmup_steps = 500
  config.num_epochs = 90
  config.eval_batch_size = 500
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 50
  return config
