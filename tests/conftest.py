"""Shared fixtures: small folders of slices written the way users have them, and a tiny finished training run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_vqvae import train
from keras_vqvae.data.synthetic import make_subject

TINY = ["--synthetic-subjects", "3,1,1", "--image-size", "32", "--channels", "8", "--residual-blocks", "1",
        "--num-embeddings", "16", "--embedding-dim", "4", "--batch-size", "16", "--dead-code-steps", "3",
        "--pixelcnn-filters", "8", "--pixelcnn-layers", "2", "--pixelcnn-kernel-size", "3", "--pixelcnn-epochs", "1",
        "--dcgan-filters", "4", "--dcgan-noise-dim", "8", "--dcgan-batch-size", "16", "--dcgan-epochs", "1",
        "--num-generated", "4", "--judge-subjects", "1"]


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny finished run: VQ-VAE, a PixelCNN conditioned on the slice position, and a DCGAN. Read it, never write
    into it."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    assert train.main([*TINY, "--epochs", "1", "--condition", "slice", "--run-dir", str(folder)]) == 0
    assert train.main([*TINY, "--epochs", "1", "--run-dir", str(folder), "--stage", "prior", "--prior", "dcgan"]) == 0
    return folder
