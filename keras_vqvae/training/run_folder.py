"""Run folders, as `python -m keras_vqvae.train` writes them: `RunFolder` owns every file name in one, and every read
and write of it.

    config.json                        the run's TrainConfig
    checkpoints/epoch_NNN.keras        VQ-VAE and optimizer state after each of the last two finished epochs
    checkpoints/state.json             which checkpoint is current, the epoch count and the per-epoch history
    checkpoints/state_copy.json        a second copy of it, which replaces it when it is damaged
    history.csv                        per-epoch training and validation metrics of the VQ-VAE
    vqvae.keras                        the trained VQ-VAE
    codes.npz                          its code maps of every split (the priors' data)
    position_network.keras             the slice-position network the generation metrics judge anatomy with
    PRIOR_checkpoints/, PRIOR_history.csv, PRIOR.keras
                                       the same for each prior trained, PRIOR being its kind's name (pixelcnn, transformer, dcgan)
    PRIOR_anomaly.json                 the prior's anomaly thresholds, the codes' and the masks', calibrated on the
                                       validation slices (priors that score codes; see keras_vqvae.anomaly_masks)
    logs/                              TensorBoard logs (vqvae/, and one folder per prior)
    metrics.json                       test metrics of each stage, generation metrics, training throughput
    plots/                             loss curves; originals beside reconstructions; PRIOR_samples.png
    saved_model/                       the VQ-VAE and the prior just trained as a TensorFlow SavedModel, with its
                                       model card README.md (see keras_vqvae.savedmodel)

Every file is written whole or not at all (to a temporary name, then renamed): a run killed at any moment, even with
SIGKILL, loses at most the epoch in progress. A file damaged afterwards (a disk fault, a copy cut short) is named in a
one-line error that says what to do, except a stage's newest checkpoint (training resumes from the one before it)
and its state file (its copy replaces it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np

from keras_vqvae.errors import InputError
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.training.checkpoints import (CheckpointFolder, damage, load_model_file, save_atomically,
                                             write_atomically)
from keras_vqvae.training.config import TrainConfig

VQVAE_STAGE = "vqvae"


@dataclasses.dataclass(frozen=True)
class KeptCodes:
    """The code maps a run keeps: each split's (n, h, w) int32, and each split's slice positions (n,) int32."""

    codes: dict[str, np.ndarray]
    positions: dict[str, np.ndarray]


class RunFolder:
    """A training run's folder (see the module's docstring for its layout).

    Args:
        path: the folder (a leading ~ is the home folder).
    """

    CONFIG_FILE = "config.json"
    MODEL_FILE = "vqvae.keras"
    METRICS_FILE = "metrics.json"
    CODES_FILE = "codes.npz"
    EXPORT_FOLDER = "saved_model"

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()  # --run-dir=~/x reaches us with its ~

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
    def codes_path(self) -> Path:
        return self.path / self.CODES_FILE

    @property
    def plots(self) -> Path:
        """The plots folder, made when first asked for."""
        folder = self.path / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def position_network_path(self) -> Path:
        """The slice-position network that the generation metrics judge anatomy with (trained once per run)."""
        return self.path / "position_network.keras"

    def prior_path(self, prior: str) -> Path:
        """The trained prior's file, PRIOR.keras (pixelcnn.keras, transformer.keras, dcgan.keras)."""
        return self.path / f"{prior}.keras"

    def anomaly_path(self, prior: str) -> Path:
        """The prior's anomaly calibration, PRIOR_anomaly.json."""
        return self.path / f"{prior}_anomaly.json"

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

    def has_trained(self) -> bool:
        """Whether a stage has finished an epoch here: a folder holding only the configuration of a start that failed
        is no run to protect."""
        return self.model_path.exists() or any(self.checkpoints(stage).recorded() is not None
                                               for stage in (VQVAE_STAGE, *PRIOR_KINDS))

    def held_priors(self) -> list[str]:
        """The names of the trained priors the folder holds."""
        return [name for name in PRIOR_KINDS if self.prior_path(name).exists()]

    def vqvae_epochs(self) -> int:
        """The epochs the run's VQ-VAE has trained (0 when none)."""
        return self.checkpoints(VQVAE_STAGE).epochs()

    def current_prior(self) -> str | None:
        """The prior every command uses unless told otherwise (`predict`, `export`, `detect`, and train's export):
        the one trained last (config.json's `prior`), else another the folder holds, so long as it was trained on
        the VQ-VAE the folder holds now (see `outdated_priors`); None when there is none."""
        current = [name for name in self.held_priors() if name not in self.outdated_priors()]
        if not current:
            return None
        last = self.read_config().prior
        return last if last in current else current[0]

    def outdated_priors(self) -> list[str]:
        """The held priors trained on the codes of a VQ-VAE that has since trained further."""
        return [name for name in self.held_priors()
                if self.checkpoints(name).changes({"vqvae_epochs": self.vqvae_epochs()})]

    def check_states(self) -> None:
        """Raises InputError if any stage's checkpoint state is broken, so that it is reported before any work."""
        for stage in (VQVAE_STAGE, *PRIOR_KINDS):
            self.checkpoints(stage).state()

    # --- reading and writing ---------------------------------------------------------------------------------------

    def read_config(self) -> TrainConfig:
        path = self.path / self.CONFIG_FILE
        try:
            return TrainConfig.from_json(path.read_text())
        except OSError as error:
            raise InputError(f"cannot read {path} ({error}): is {self.path} a run folder made by keras_vqvae.train?")
        except (json.JSONDecodeError, AttributeError, TypeError) as error:
            raise InputError(f"{path} is damaged ({error}): restore it (the model card {self.export_path}/README.md "
                             f"of a finished run holds a copy)") from None

    def write_config(self, config: TrainConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path / self.CONFIG_FILE, config.to_json())

    def read_metrics(self) -> dict:
        path = self.path / self.METRICS_FILE
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError as error:
            raise InputError(f"{path} is damaged ({error}): delete it, and run the train command again to measure "
                             f"the stages afresh") from None

    def write_metrics(self, results: dict) -> None:
        write_atomically(self.path / self.METRICS_FILE, json.dumps(results, indent=2) + "\n")

    def read_anomaly_calibration(self, prior: str) -> tuple[dict | None, str | None]:
        """The prior's anomaly calibration (see `keras_vqvae.calibration`) and None, or None and why it cannot be
        read: None when there is none, 'damaged (...)' when it is unreadable."""
        path = self.anomaly_path(prior)
        if not path.exists():
            return None, None
        try:
            calibration = json.loads(path.read_text())
            float(calibration["threshold"]), float(calibration["percentile"])
            return calibration, None
        except (OSError, ValueError, TypeError, KeyError) as error:
            return None, f"damaged ({type(error).__name__}: {error})"

    def write_anomaly_calibration(self, prior: str, calibration: dict) -> None:
        write_atomically(self.anomaly_path(prior), json.dumps(calibration, indent=2) + "\n")

    def write_history(self, stage: str, history: list[dict[str, float]]) -> None:
        """The per-epoch history of a stage as CSV, one row per epoch."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["epoch", *history[0]], lineterminator="\n")
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **row})
        write_atomically(self._history_path(stage), text.getvalue())

    def read_codes(self, vqvae_epochs: int) -> KeptCodes | None:
        """Each split's code maps and slice positions, when they were made by the VQ-VAE after `vqvae_epochs`
        epochs; else None (also, with a note, when the file is damaged: they are made again)."""
        path = self.codes_path
        if not path.exists():
            return None
        try:
            with np.load(path) as saved:
                if int(saved["vqvae_epochs"]) != vqvae_epochs:
                    return None
                positions = {name.removeprefix("positions_"): saved[name] for name in saved.files
                             if name.startswith("positions_")}
                codes = {name: saved[name] for name in saved.files
                         if name != "vqvae_epochs" and not name.startswith("positions_")}
                return KeptCodes(codes, positions)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            print(f"note: {path} is damaged ({error}), so the code maps are made again")
            return None

    def write_codes(self, codes: dict[str, np.ndarray], positions: dict[str, np.ndarray], vqvae_epochs: int) -> None:
        """Each split's code maps (n, h, w) and slice positions (n,), made by the VQ-VAE after `vqvae_epochs`."""
        temporary = self.path / "codes.tmp.npz"
        np.savez_compressed(temporary, vqvae_epochs=vqvae_epochs, **codes,
                            **{f"positions_{name}": value for name, value in positions.items()})
        os.replace(temporary, self.codes_path)

    def save_model(self, stage: str, model: keras.Model) -> None:
        """The trained model of stage 'vqvae', of a prior, or the 'position_network'."""
        path = {VQVAE_STAGE: self.model_path, "position_network": self.position_network_path}.get(
            stage, self.prior_path(stage))
        save_atomically(model, path)

    def load_position_network(self) -> tuple[keras.Model | None, str | None]:
        """The kept slice-position network and None, or None and why there is none to use: None when none was
        kept, 'damaged (...)' when it cannot be loaded (it depends on the training slices only, so the caller can
        train it again)."""
        path = self.position_network_path
        if not path.exists():
            return None, None
        problem = damage(path)
        return (keras.saving.load_model(path), None) if problem is None else (None, problem)

    def _model_file(self, stage: str) -> Path:
        """The trained model's file of stage 'vqvae' or of a prior, which the folder must hold (else an InputError
        saying how to train it)."""
        if stage == VQVAE_STAGE:
            if not self.model_path.exists():
                raise InputError(f"{self.path} holds no trained VQ-VAE ({self.MODEL_FILE}): train it with python -m "
                                 f"keras_vqvae.train --run-dir {self.path} (--stage vqvae or all)")
            return self.model_path
        if not self.prior_path(stage).exists():
            others = self.held_priors()
            held = f"it holds {' and '.join(others)}: pass --prior {others[0]}, or " if others else ""
            raise InputError(f"{self.path} holds no trained {stage} prior ({self.prior_path(stage).name}): {held}"
                             f"train it with python -m keras_vqvae.train --run-dir {self.path} --stage prior "
                             f"--prior {stage}")
        return self.prior_path(stage)

    def _rewrite(self, stage: str) -> str:
        """How to write a damaged trained model again from its stage's checkpoints."""
        stage_flags = "--stage vqvae" if stage == VQVAE_STAGE else f"--stage prior --prior {stage}"
        return (f"write it again from the run's checkpoints with its train command and {stage_flags} (the model "
                f"card {self.export_path}/README.md shows the command)")

    def check_run(self) -> None:
        """An InputError when the folder is not a run folder (it has no configuration)."""
        if not self.is_run():
            raise InputError(f"{self.path} is not a run folder made by keras_vqvae.train (it has no "
                             f"{self.CONFIG_FILE}): give the folder of a training run (its --run-dir)")

    def check_model(self, stage: str) -> None:
        """An InputError when the folder lacks the trained model of stage 'vqvae' or of a prior, or it is damaged."""
        problem = damage(self._model_file(stage))
        if problem:
            raise InputError(f"{self._model_file(stage)} is {problem}: {self._rewrite(stage)}")

    def load_model(self, stage: str) -> keras.Model:
        """The trained model of stage 'vqvae' or of a prior; an InputError when the folder lacks it or it is damaged."""
        return load_model_file(self._model_file(stage), self._rewrite(stage))

    def load(self, prior: str | None = None) -> tuple[TrainConfig, keras.Model, keras.Model | None]:
        """The configuration, the VQ-VAE and (when `prior` names one) that trained prior."""
        self.check_run()
        config = self.read_config()
        stages = (VQVAE_STAGE, prior) if prior else (VQVAE_STAGE,)
        for stage in stages:  # both are there before either is loaded
            self._model_file(stage)
        return config, self.load_model(VQVAE_STAGE), self.load_model(prior) if prior else None
