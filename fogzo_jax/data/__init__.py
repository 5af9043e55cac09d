"""Input pipelines (grain): images (MNIST-type arrays, ImageFolder, tfds) and packed text."""

from fogzo_jax.data.mnist import Dataset, DataError, load_image_dataset, read_idx
from fogzo_jax.data.pipeline import (DATASETS, IMAGE_DATASETS, NATIVE_SIZE, TEXT_DATASETS,
                                     Pipeline, check_args, make_pipeline)

__all__ = ["DATASETS", "IMAGE_DATASETS", "NATIVE_SIZE", "TEXT_DATASETS", "DataError", "Dataset",
           "Pipeline", "check_args", "load_image_dataset", "make_pipeline", "read_idx"]
