"""Datasets from folders of labels, validation, transforms and batching."""

from retina_cli.data.dataset import detect_format, load_dataset
from retina_cli.data.records import DetectionDataset, ImageRecord
from retina_cli.data.report import Problem, ValidationReport

__all__ = [
    "DetectionDataset",
    "ImageRecord",
    "Problem",
    "ValidationReport",
    "detect_format",
    "load_dataset",
]
