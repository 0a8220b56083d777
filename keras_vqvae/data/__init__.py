"""Data: brain slices from folders (OASIS layout or any folder), the embedded synthetic subjects, and checks.

`python -m keras_vqvae.data verify DIR` checks an OASIS copy against the shipped manifest;
`python -m keras_vqvae.data make-sample DIR` writes the embedded synthetic data set to disk in the OASIS layout, with
its tissue labels as OASIS's segmentation folders.
"""

from keras_vqvae.data.codes import make_code_dataset
from keras_vqvae.data.datasets import make_dataset, pixel_variance
from keras_vqvae.data.sets import SliceSet, Slices
from keras_vqvae.data.slices import (OASIS_FOLDERS, extra_synthetic_slices, load_slices, load_split, read_folder,
                                     read_images, synthetic_slices)
from keras_vqvae.data.labels import TISSUES
from keras_vqvae.data.synthetic import SubjectSplit, make_labels, make_subject

__all__ = ["OASIS_FOLDERS", "SliceSet", "Slices", "SubjectSplit", "TISSUES", "extra_synthetic_slices",
           "load_slices", "load_split", "make_code_dataset", "make_dataset", "make_labels", "make_subject",
           "pixel_variance", "read_folder", "read_images", "synthetic_slices"]
