"""Tissue labels of slices: what they are, how OASIS stores them, and how a folder's label files are paired with its
images and checked.

The OASIS slice set ships a segmentation of every slice beside the slices, ``keras_png_slices_seg_<split>``, one
8-bit PNG per slice named like it (``seg_441_slice_0.nii.png`` labels ``case_441_slice_0.nii.png``), each pixel one of
four values (`TISSUE_VALUES`). The package holds labels as 0..3 (`TISSUES`); the embedded data's virtual subjects
carry theirs from the same deformation as their images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_vqvae.errors import InputError

TISSUES = ("background", "CSF", "grey matter", "white matter")  # label 0..3
TISSUE_VALUES = (0, 85, 170, 255)  # each label's pixel value in the OASIS segmentation files
LABEL_FOLDER_PREFIX = "keras_png_slices_seg_"


def label_name(image_name: str) -> str:
    """The segmentation file's name of a slice's: ``case_441_slice_0.nii.png`` -> ``seg_441_slice_0.nii.png``."""
    stem = image_name[len("case_"):] if image_name.lower().startswith("case_") else image_name
    return f"seg_{stem}"


def paired_label_files(images: list[Path], image_sizes: list[tuple[int, int]], folder: Path) -> list[Path]:
    """The label file in `folder` of each of `images`, every one checked.

    Args:
        images: a split's image files.
        image_sizes: their (width, height), as read when the images were checked.
        folder: the split's segmentation folder.

    Returns:
        The label files, in the order of `images`. An InputError names the first image without a label file, the
        first label file without an image, a label file that is not an 8-bit grayscale PNG of its image's size, or
        one holding a value other than `TISSUE_VALUES`.
    """
    found = {p.name: p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    wanted = [label_name(image.name) for image in images]
    fix = f"restore it, or move {folder.name} out of the data folder to train without tissue labels"
    for image, name in zip(images, wanted):
        if name not in found:
            raise InputError(f"{folder} has no {name}, the tissue labels of {image}: {fix}")
    extra = sorted(set(found) - set(wanted))
    if extra:
        raise InputError(f"{found[extra[0]]} labels no slice of {images[0].parent} ({len(extra)} such files): "
                         f"add its slice or delete it")
    files = [found[name] for name in wanted]
    for file, size in zip(files, image_sizes):
        _check_label_file(file, size)
    return files


def _check_label_file(file: Path, size: tuple[int, int]) -> None:
    try:
        with Image.open(file) as image:
            if image.format != "PNG" or image.mode not in ("L", "P"):
                raise InputError(f"{file} holds {image.format} {image.mode} data, not the 8-bit grayscale PNG of "
                                 f"OASIS's segmentations: save it as one")
            if image.size != size:
                raise InputError(f"{file} is {image.size[0]}x{image.size[1]} but its slice is {size[0]}x{size[1]}: "
                                 f"give the segmentation of that slice")
            values = np.asarray(image.convert("L"))
    except (OSError, SyntaxError, UnidentifiedImageError) as error:
        raise InputError(f"{file} is not a readable image ({error}): copy it again or delete it") from None
    counts = np.bincount(values.ravel(), minlength=256)
    counts[list(TISSUE_VALUES)] = 0
    if counts.any():
        raise InputError(f"{file} holds the value {int(np.flatnonzero(counts)[0])}, not one of the tissue values "
                         f"{', '.join(map(str, TISSUE_VALUES))} (background, CSF, grey matter, white matter): "
                         f"give OASIS's segmentation of the slice")
