"""Areas a monitoring programme can report: a stratified random sample design of any class map for an
analyst to label, and error-adjusted areas with 95 % confidence intervals from the labelled sample
(Olofsson et al. 2014)."""

from geoseg.areas.design import SampleDesign, allocate, design_sample, sample_size
from geoseg.areas.estimate import (
    AreaEstimate,
    approximate_from_confusion,
    estimate_from_sample,
    read_confusion,
    stratified_estimate,
)
from geoseg.areas.maps import ClassCounts, ClassMap, MapError, SampleError, count_classes, open_class_map
from geoseg.areas.samples import read_labelled_sample, write_design

__all__ = [
    "AreaEstimate",
    "ClassCounts",
    "ClassMap",
    "MapError",
    "SampleDesign",
    "SampleError",
    "allocate",
    "approximate_from_confusion",
    "count_classes",
    "design_sample",
    "estimate_from_sample",
    "open_class_map",
    "read_confusion",
    "read_labelled_sample",
    "sample_size",
    "stratified_estimate",
    "write_design",
]
