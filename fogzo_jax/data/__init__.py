"""Input pipelines: MNIST / Fashion-MNIST (IDX files, tfds, shipped copy) and batching."""

from fogzo_jax.data.mnist import (DATASETS, Dataset, DataError, batches, load_image_dataset,
                                  read_idx)
