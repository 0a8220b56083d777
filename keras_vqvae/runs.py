"""Run folders, as `python -m keras_vqvae.train` writes them: where each trained model lies, and loading them back."""

from __future__ import annotations

from pathlib import Path

import keras

from keras_vqvae.config import CONFIG_FILE, TrainConfig
from keras_vqvae.errors import InputError

MODEL_FILE = "vqvae.keras"
PRIORS = ("pixelcnn", "dcgan")


def prior_file(prior: str) -> str:
    """The trained prior's file in a run folder: pixelcnn.keras or dcgan.keras."""
    return f"{prior}.keras"


def load_run(run_dir: str | Path, prior: str | None = None) -> tuple[TrainConfig, keras.Model, keras.Model | None]:
    """The configuration, VQ-VAE and (when `prior` names one, 'pixelcnn' or 'dcgan') that prior of a run folder."""
    run = Path(run_dir)
    if not (run / CONFIG_FILE).exists():
        raise InputError(f"{run} is not a run folder made by keras_vqvae.train (it has no {CONFIG_FILE}): give the "
                         f"--run-dir of a training run")
    config = TrainConfig.load(run)
    if not (run / MODEL_FILE).exists():
        raise InputError(f"{run} holds no trained VQ-VAE ({MODEL_FILE}): finish training it with "
                         f"python -m keras_vqvae.train --run-dir {run}")
    if prior is not None and not (run / prior_file(prior)).exists():
        others = [name for name in PRIORS if (run / prior_file(name)).exists()]
        held = f"it holds {' and '.join(others)}: pass --prior {others[0]}, or " if others else ""
        raise InputError(f"{run} holds no trained {prior} prior ({prior_file(prior)}): {held}train it with "
                         f"python -m keras_vqvae.train --run-dir {run} --stage prior --prior {prior}")
    vqvae = keras.saving.load_model(run / MODEL_FILE)
    return config, vqvae, keras.saving.load_model(run / prior_file(prior)) if prior else None
