"""Run folders, as `python -m keras_vqvae.train` writes them: `RunFolder` owns every file name in one, and every read
and write of it.

    config.json                        the run's TrainConfig
    checkpoints/epoch_NNN.keras        VQ-VAE and optimizer state after the last finished epoch
    checkpoints/state.json             which checkpoint is current, the epoch count and the per-epoch history
    history.csv                        per-epoch training and validation metrics of the VQ-VAE
    vqvae.keras                        the trained VQ-VAE
    codes.npz                          its code maps of every split (the priors' data)
    PRIOR_checkpoints/, PRIOR_history.csv, PRIOR.keras
                                       the same for each prior trained, PRIOR being its kind's name (pixelcnn, dcgan)
    logs/                              TensorBoard logs (vqvae/, and one folder per prior)
    metrics.json                       test metrics of each stage, generation metrics, training throughput
    plots/                             loss curves; originals beside reconstructions; PRIOR_samples.png
    saved_model/                       the VQ-VAE and the prior just trained as a TensorFlow SavedModel, with its
                                       model card README.md (see keras_vqvae.savedmodel)

Every file is written whole or not at all (to a temporary name, then renamed): a run killed at any moment, even with
SIGKILL, loses at most the epoch in progress.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from keras_vqvae.errors import InputError
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.training.config import TrainConfig

VQVAE_STAGE = "vqvae"


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path`, replacing it only once the whole text is written."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class CheckpointFolder:
    """A stage's checkpoints: `epoch_NNN.keras` after each finished epoch, and `state.json`, replaced atomically,
    naming the current one with the epoch count, the per-epoch history and the tag (what the model was trained
    from)."""

    STATE_FILE = "state.json"

    def __init__(self, path: Path):
        self.path = path

    def state(self) -> dict | None:
        """The saved state, or None when no epoch has finished."""
        path = self.path / self.STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        if not (self.path / state["checkpoint"]).exists():
            raise InputError(f"{path} names {state['checkpoint']}, which is missing: delete {self.path} to start over")
        return state

    def epochs(self) -> int:
        """Epochs finished so far (0 when none)."""
        state = self.state()
        return 0 if state is None else state["epoch"]

    def load_model(self, state: dict) -> keras.Model:
        return keras.saving.load_model(self.path / state["checkpoint"])

    def save(self, model: keras.Model, epoch: int, history: list[dict], tag: dict) -> None:
        """The model after `epoch` epochs to a new file, then the state pointing at it; older checkpoints go."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch:03d}.keras"
        model.save(self.path / name)
        write_atomically(self.path / self.STATE_FILE,
                         json.dumps({"epoch": epoch, "checkpoint": name, **tag, "history": history}, indent=1))
        for old in self.path.glob("epoch_*.keras"):
            if old.name != name:
                old.unlink()

    def set_aside(self) -> Path:
        """Moves the checkpoints to a `_stale` folder beside (replacing an older one); returns where."""
        stale = self.path.with_name(self.path.name + "_stale")
        shutil.rmtree(stale, ignore_errors=True)
        self.path.rename(stale)
        return stale


class RunFolder:
    """A training run's folder (see the module's docstring for its layout).

    Args:
        path: the folder.
    """

    CONFIG_FILE = "config.json"
    MODEL_FILE = "vqvae.keras"
    METRICS_FILE = "metrics.json"
    CODES_FILE = "codes.npz"
    EXPORT_FOLDER = "saved_model"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- names -----------------------------------------------------------------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL_FILE

    @property
    def export_path(self) -> Path:
        return self.path / self.EXPORT_FOLDER

    @property
    def plots(self) -> Path:
        """The plots folder, made when first asked for."""
        folder = self.path / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def prior_path(self, prior: str) -> Path:
        """The trained prior's file: pixelcnn.keras or dcgan.keras."""
        return self.path / f"{prior}.keras"

    def checkpoints(self, stage: str) -> CheckpointFolder:
        """The checkpoints of stage 'vqvae' or of a prior, by its name."""
        return CheckpointFolder(self.path / ("checkpoints" if stage == VQVAE_STAGE else f"{stage}_checkpoints"))

    def logs(self, stage: str) -> Path:
        return self.path / "logs" / stage

    def _history_path(self, stage: str) -> Path:
        return self.path / ("history.csv" if stage == VQVAE_STAGE else f"{stage}_history.csv")

    # --- what it holds ---------------------------------------------------------------------------------------------

    def is_run(self) -> bool:
        return (self.path / self.CONFIG_FILE).exists()

    def held_priors(self) -> list[str]:
        """The names of the trained priors the folder holds."""
        return [name for name in PRIOR_KINDS if self.prior_path(name).exists()]

    def check_states(self) -> None:
        """Raises InputError if any stage's checkpoint state is broken, so that it is reported before any work."""
        for stage in (VQVAE_STAGE, *PRIOR_KINDS):
            self.checkpoints(stage).state()

    # --- reading and writing ---------------------------------------------------------------------------------------

    def read_config(self) -> TrainConfig:
        path = self.path / self.CONFIG_FILE
        try:
            return TrainConfig.from_json(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read {path} ({error}): is {self.path} a run folder made by keras_vqvae.train?")

    def write_config(self, config: TrainConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path / self.CONFIG_FILE, config.to_json())

    def read_metrics(self) -> dict:
        path = self.path / self.METRICS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def write_metrics(self, results: dict) -> None:
        write_atomically(self.path / self.METRICS_FILE, json.dumps(results, indent=2) + "\n")

    def write_history(self, stage: str, history: list[dict[str, float]]) -> None:
        """The per-epoch history of a stage as CSV, one row per epoch."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["epoch", *history[0]], lineterminator="\n")
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **row})
        write_atomically(self._history_path(stage), text.getvalue())

    def read_codes(self, vqvae_epochs: int) -> dict[str, np.ndarray] | None:
        """Each split's code maps, when they were made by the VQ-VAE after `vqvae_epochs` epochs; else None."""
        path = self.path / self.CODES_FILE
        if not path.exists():
            return None
        with np.load(path) as saved:
            if int(saved["vqvae_epochs"]) != vqvae_epochs:
                return None
            return {name: saved[name] for name in saved.files if name != "vqvae_epochs"}

    def write_codes(self, codes: dict[str, np.ndarray], vqvae_epochs: int) -> None:
        temporary = self.path / "codes.tmp.npz"
        np.savez_compressed(temporary, vqvae_epochs=vqvae_epochs, **codes)
        os.replace(temporary, self.path / self.CODES_FILE)

    def save_model(self, stage: str, model: keras.Model) -> None:
        """The trained model of stage 'vqvae' or of a prior."""
        path = self.model_path if stage == VQVAE_STAGE else self.prior_path(stage)
        temporary = path.with_name(f"{path.stem}.tmp.keras")
        model.save(temporary)
        os.replace(temporary, path)

    def load(self, prior: str | None = None) -> tuple[TrainConfig, keras.Model, keras.Model | None]:
        """The configuration, the VQ-VAE and (when `prior` names one) that trained prior."""
        if not self.is_run():
            raise InputError(f"{self.path} is not a run folder made by keras_vqvae.train (it has no "
                             f"{self.CONFIG_FILE}): give the --run-dir of a training run")
        config = self.read_config()
        if not self.model_path.exists():
            raise InputError(f"{self.path} holds no trained VQ-VAE ({self.MODEL_FILE}): finish training it with "
                             f"python -m keras_vqvae.train --run-dir {self.path}")
        if prior is not None and not self.prior_path(prior).exists():
            others = self.held_priors()
            held = f"it holds {' and '.join(others)}: pass --prior {others[0]}, or " if others else ""
            raise InputError(f"{self.path} holds no trained {prior} prior ({self.prior_path(prior).name}): {held}"
                             f"train it with python -m keras_vqvae.train --run-dir {self.path} --stage prior "
                             f"--prior {prior}")
        vqvae = keras.saving.load_model(self.model_path)
        return config, vqvae, keras.saving.load_model(self.prior_path(prior)) if prior else None
