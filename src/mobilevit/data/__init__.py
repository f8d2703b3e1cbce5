"""Datasets, transforms and the multi-scale sampler."""

from .folders import BadSample, DataError, ImageFolderDataset, collate_skip_bad
from .sampler import MultiScaleBatchSampler, SampleKey
from .synthetic import write_digits, write_shapes, write_shapes_coco
from .transforms import BatchMix, EvalTransform, TrainTransform

__all__ = [
    "BadSample",
    "BatchMix",
    "DataError",
    "EvalTransform",
    "ImageFolderDataset",
    "MultiScaleBatchSampler",
    "SampleKey",
    "TrainTransform",
    "collate_skip_bad",
    "write_digits",
    "write_shapes",
    "write_shapes_coco",
]
