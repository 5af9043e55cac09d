"""ResNet-18 on ImageNet-100, 2-bit fixed-scale weights (the paper's Table 1 row).

From the recipe (pytorch/examples imagenet, as the LSQ paper): batch 256, 90 epochs,
random-resized crop + flip, 224 px, first and last layers full precision; AdamW + cosine as the
paper says. Our choices, not the paper's (its values are not in our notes): lr 1e-3, weight decay
0.05, 500 warm-up steps. ImageNet-100 = the CMC class list applied to an ImageFolder tree.

  python train.py --config=configs/resnet18_in100.py --config.data.data_dir=/data/imagenet \
      --workdir=runs/r18_in100
  # reduced scale, offline (28-px Fashion-MNIST, small-image stem):
  python train.py --config=configs/resnet18_in100.py --config.data.name=fashion_mnist \
      --workdir=runs/r18_fashion
  # CIFAR-10 from the shipped JPEG archives (decoded into memory; the study's resnet8_cifar10):
  python train.py --config=configs/resnet18_in100.py --config.data.name=cifar10 \
      --config.data.data_dir=<folder with cifar10_{train,test}_jpg.tar.gz> --config.model.width=8 \
      --config.num_epochs=5 --config.data.batch_size=128 --workdir=runs/r18_cifar10
"""

import ml_collections

from fogzo_jax.train.config import default_config


def get_config():
  config = default_config()
  config.model = ml_collections.ConfigDict(dict(
      name="resnet18", width=64, quantize_first_last=False, dtype="float32",
      param_dtype="float32"))
  config.quant.update(kind="fixed", bits=2, ste="identity")  # --config.quant.ste=tanh: tanh row
  config.estimator.update(kind="fogzo", beta_min=0.999,
                          evaluation="sequential")  # ± forwards one after the other: 1.8×
                                                    # faster for convolutions on XLA:CPU, and
                                                    # 1.63× STE's FLOPs under FSDP (vmapped: 5.7×)
  config.optimizer.update(learning_rate=1e-3 * 256 / 256,  # linear scaling from 1e-3 at 256
                          weight_decay=0.05, warmup_steps=500)
  config.data.update(name="imagenet100", augment="crop_flip", normalize="imagenet",
                     eval_train=False, batch_size=256, eval_batch_size=500)
  config.num_epochs = 90
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 50
  return config
