"""Shared fixtures: small folders of slices written the way users have them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_vqvae.data.synthetic import make_subject


@pytest.fixture(scope="session")
def subject_slices() -> np.ndarray:
    """Eight 64x64 uint8 slices of one virtual subject (a real brain shape, background exactly 0)."""
    return make_subject(case_id=1, seed=0, num_slices=8, image_size=64)


def write_slices(folder, pixels: np.ndarray, case_ids, name="case_{case:03d}_slice_{slice}.nii.png"):
    """Writes each case's copy of `pixels` (n, H, W) as 8-bit PNGs named like OASIS; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in case_ids:
        for number, image in enumerate(pixels):
            Image.fromarray(image).save(folder / name.format(case=case, slice=number))
    return folder
