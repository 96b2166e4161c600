"""Datasets: one registry of targets and sources, variants, the paper's subset sampler, model transforms."""

from compute.data.folder import USAGE as FOLDER_USAGE
from compute.data.registry import (
    DATASETS,
    DatasetInfo,
    ImageSet,
    dataset_info,
    dataset_names,
    describe,
    load_dataset,
    parse_dataset_spec,
)
from compute.data.sampler import paper_seeds, sample_subset
from compute.data.transforms import augment_batch, to_model_input
from compute.data.variants import apply_variant, lowpass, lowres

__all__ = [
    "DATASETS",
    "FOLDER_USAGE",
    "DatasetInfo",
    "ImageSet",
    "apply_variant",
    "augment_batch",
    "dataset_info",
    "dataset_names",
    "describe",
    "load_dataset",
    "lowpass",
    "lowres",
    "paper_seeds",
    "parse_dataset_spec",
    "sample_subset",
    "to_model_input",
]
