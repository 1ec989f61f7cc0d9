"""Data layer: whole datasets as uint8 tensors, the DARTS search split, and device-side batching.

Why a package of its own: everything else (search, retrain, evaluation) only needs
``build_search_data`` / ``load_images`` + ``TensorBatches`` and never touches files or PIL.
"""

from nas.data.datasets import ImageTensors, load_images
from nas.data.loader import BatchCycle, SearchData, TensorBatches, build_search_data
from nas.data.sample import load_sample
from nas.data.split import split_indices

__all__ = [
    "BatchCycle",
    "ImageTensors",
    "SearchData",
    "TensorBatches",
    "build_search_data",
    "load_images",
    "load_sample",
    "split_indices",
]
