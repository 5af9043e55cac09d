"""Input pipelines: images (MNIST-type arrays, ImageFolder, tfds) and text (packed LM data)."""

from fogzo_jax.data.mnist import (Dataset, DataError, batches, load_image_dataset, read_idx)
from fogzo_jax.data.pipeline import (DATASETS, IMAGE_DATASETS, TEXT_DATASETS, Pipeline,
                                     make_pipeline, prefetch)
