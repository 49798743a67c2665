"""Data to train on: labelled recordings (folders, manifests), the feature cache, the
sub-clips gathered from it and honest splits; synthetic sets in ``musemo.data.synthetic``."""

from .cache import CacheReport, FeatureCache
from .recordings import (
    Recording,
    load_recordings,
    read_manifest,
    scan_folder,
    unlabelled_recordings,
)
from .splits import describe_split, holdout_split, kfold_splits
from .subclips import SubclipData, gather, load_dataset

__all__ = [
    "CacheReport",
    "FeatureCache",
    "Recording",
    "SubclipData",
    "describe_split",
    "gather",
    "holdout_split",
    "kfold_splits",
    "load_dataset",
    "load_recordings",
    "read_manifest",
    "scan_folder",
    "unlabelled_recordings",
]
