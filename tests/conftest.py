"""Shared fixtures: small folders of slices written the way users have them, and tiny training runs, each trained once
per session. A test reads a session's run as it is, or copies it (`copy_run`) before writing into it."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from filelock import FileLock
from PIL import Image

from keras_vqvae import train
from keras_vqvae.data.synthetic import make_subject

# Tiny models on 3 + 1 + 1 virtual subjects at 32 x 32, each prior trained for one epoch.
TINY_MODELS = ["--synthetic-subjects", "3,1,1", "--image-size", "32", "--channels", "8", "--residual-blocks", "1",
               "--num-embeddings", "16", "--embedding-dim", "4", "--batch-size", "16", "--dead-code-steps", "3",
               "--pixelcnn-filters", "8", "--pixelcnn-layers", "2", "--pixelcnn-kernel-size", "3",
               "--pixelcnn-epochs", "1", "--dcgan-filters", "4", "--dcgan-noise-dim", "8", "--dcgan-batch-size", "16",
               "--dcgan-epochs", "1", "--num-generated", "4", "--judge-subjects", "1"]
TINY_EXPORTING = [*TINY_MODELS, "--judge-epochs", "1"]  # a judge of one epoch: quick, and unsure
TINY = [*TINY_EXPORTING, "--no-export"]  # the SavedModel left out: a test of the export takes TINY_EXPORTING


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


def copy_run(run, tmp_path):
    """A copy of the session's run folder `run` in tmp_path/run (files keep their times), to write into."""
    return shutil.copytree(run, tmp_path / "run")


def session_run(tmp_path_factory, worker_id: str, name: str, make: Callable[[Path], str]) -> tuple[Path, str]:
    """The session's run `name`: made once by `make(folder)`, which returns what it printed, whichever of the
    test workers (pytest-xdist's, which share one temporary folder) asks first; the others wait and read it.
    (run folder, what `make` printed)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each worker has a folder of its own in the one they share
        shared = shared.parent
    folder, done = shared / name / "run", shared / name / "printed.txt"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed to make it left a part
            done.parent.mkdir(exist_ok=True)
            done.write_text(make(folder))
    return folder, done.read_text()


def _train(arguments: list[str]) -> str:
    """What `python -m keras_vqvae.train ARGUMENTS` prints; it must succeed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train.main(arguments) == 0
    return printed.getvalue()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, worker_id):
    """A tiny finished run: VQ-VAE, a PixelCNN conditioned on the slice position, and a DCGAN trained last; no
    SavedModel. Read it, or copy it before writing into it."""
    def make(folder):
        return (_train([*TINY, "--epochs", "1", "--condition", "slice", "--run-dir", str(folder)])
                + _train([*TINY, "--epochs", "1", "--run-dir", str(folder), "--stage", "prior", "--prior", "dcgan"]))
    return session_run(tmp_path_factory, worker_id, "trained", make)[0]


@pytest.fixture(scope="session")
def vqvae_run(tmp_path_factory, worker_id):
    """A tiny VQ-VAE trained for two epochs, no prior: copy it before writing into it."""
    return session_run(tmp_path_factory, worker_id, "vqvae", lambda folder: _train(
        [*TINY, "--stage", "vqvae", "--epochs", "2", "--run-dir", str(folder), "--quiet"]))[0]


FINISHED_RUN = [*TINY_MODELS, "--epochs", "2", "--pixelcnn-epochs", "2"]  # the default judge; and --run-dir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, worker_id) -> tuple:
    """The whole train command once: a VQ-VAE and a PixelCNN of two epochs each (made with FINISHED_RUN), judged
    and exported. (run folder, what the command printed): copy the folder before writing into it."""
    return session_run(tmp_path_factory, worker_id, "finished",
                       lambda folder: _train([*FINISHED_RUN, "--run-dir", str(folder)]))
