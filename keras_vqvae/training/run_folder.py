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
    PRIOR_anomaly.json                 the prior's anomaly threshold, calibrated on the validation slices (priors
                                       that score codes; see keras_vqvae.anomaly)
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
import io
import json
import os
import shutil
import zipfile
import zlib
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


def save_atomically(model: keras.Model, path: Path) -> None:
    """`model` into the .keras file `path`, replacing it only once the whole file is written."""
    temporary = path.with_name(f"{path.stem}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)


def damage(path: Path) -> str | None:
    """Why the .keras file `path` cannot be loaded ('missing', or 'damaged (...)'), or None when it is whole. A .keras
    file is a zip archive, whose directory and checksums show a file cut short or corrupted."""
    try:
        with zipfile.ZipFile(path) as archive:
            corrupt, names = archive.testzip(), set(archive.namelist())
    except FileNotFoundError:
        return "missing"
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        return f"damaged ({error})"
    if corrupt is not None:
        return f"damaged (its {corrupt} fails its checksum)"
    if not {"config.json", "model.weights.h5"} <= names:
        return "damaged (it lacks the model's configuration or weights)"
    return None


def load_model_file(path: Path, remedy: str) -> keras.Model:
    """The model in the .keras file `path`, or an InputError saying that it is missing or damaged, and `remedy`."""
    problem = damage(path)
    if problem is None:
        try:
            return keras.saving.load_model(path)
        except (ValueError, OSError, KeyError) as error:
            problem = f"damaged ({str(error).splitlines()[0]})"
    raise InputError(f"{path} is {problem}: {remedy}")


def _checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.keras"


def _state_problem(path: Path) -> str | None:
    """Why the state file `path` cannot be read ('FileNotFoundError: ...', 'JSONDecodeError: ...'), or None."""
    try:
        state = json.loads(path.read_text())
        int(state["epoch"]), str(state["checkpoint"]), list(state["history"])
    except (OSError, ValueError, TypeError, KeyError) as error:
        return f"{type(error).__name__}: {error}"
    return None


class CheckpointFolder:
    """A stage's checkpoints: `epoch_NNN.keras` after each finished epoch (the last two are kept, each written under
    a temporary name, then renamed), and `state.json`, replaced atomically, naming the newest with the epoch count,
    the per-epoch history and the tag (what the model was trained from), then its copy `state_copy.json`."""

    STATE_FILE = "state.json"
    COPY_FILE = "state_copy.json"
    KEPT = 2  # the newest checkpoint, and the one before it in case the newest is damaged later

    def __init__(self, path: Path):
        self.path = path

    def recorded(self) -> dict | None:
        """The state written after the last finished epoch, or None when no epoch has finished. A damaged state
        file is replaced by its copy, saying so; an InputError when the copy cannot replace it."""
        path, copy = self.path / self.STATE_FILE, self.path / self.COPY_FILE
        if not path.exists() and not copy.exists():
            return None
        problem = _state_problem(path)
        if problem is None:
            return json.loads(path.read_text())
        copy_problem = _state_problem(copy)
        if copy_problem is not None:
            raise InputError(f"{path} is damaged ({problem}) and its copy {copy.name} cannot replace it "
                             f"({copy_problem}): restore it, or delete {self.path} to train this stage again from the "
                             f"start")
        write_atomically(path, copy.read_text())
        state = json.loads(path.read_text())
        print(f"note: {path} was damaged ({problem}): replaced it with its copy {copy.name}, which records "
              f"{state['epoch']} finished epochs")
        return state

    def state(self) -> dict | None:
        """The state to resume from: the recorded one, or when its checkpoint is missing or damaged, that of the
        checkpoint before it, with `passed_over` saying why. None when no epoch has finished; an InputError when
        no kept checkpoint can be loaded."""
        state = self.recorded()
        if state is None:
            return None
        problem = damage(self.path / state["checkpoint"])
        if problem is None:
            return state
        epoch = state["epoch"] - 1
        if epoch >= 1 and damage(self.path / _checkpoint_name(epoch)) is None:
            return {**state, "epoch": epoch, "checkpoint": _checkpoint_name(epoch), "history": state["history"][:epoch],
                    "passed_over": f"{state['checkpoint']} is {problem}"}
        raise InputError(f"{self.path / self.STATE_FILE} names {state['checkpoint']}, which is {problem}, and no "
                         f"earlier checkpoint is kept whole: delete {self.path} to train this stage again from the "
                         f"start")

    def epochs(self) -> int:
        """Epochs finished so far (0 when none)."""
        state = self.recorded()
        return 0 if state is None else state["epoch"]

    def changes(self, tag: dict) -> dict:
        """Which values of `tag` (what a model is trained from) differ from those the checkpoints were trained with,
        with the old values; empty when nothing changed or no epoch has finished."""
        state = self.recorded()
        return {} if state is None else {key: state.get(key) for key, value in tag.items() if state.get(key) != value}

    def load_model(self, state: dict) -> keras.Model:
        return load_model_file(self.path / state["checkpoint"],
                               f"delete {self.path} to train this stage again from the start")

    def save(self, model: keras.Model, epoch: int, history: list[dict], tag: dict) -> None:
        """The model after `epoch` epochs to a new file, then the state pointing at it; of the older checkpoints only
        the one before it stays."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = _checkpoint_name(epoch)
        save_atomically(model, self.path / name)
        state = json.dumps({"epoch": epoch, "checkpoint": name, **tag, "history": history}, indent=1)
        for state_file in (self.STATE_FILE, self.COPY_FILE):
            write_atomically(self.path / state_file, state)
        kept = {_checkpoint_name(epoch - back) for back in range(self.KEPT)}
        for old in self.path.glob("epoch_*.keras"):  # older ones, and what a killed save left under a temporary name
            if old.name not in kept:
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

    def prior_to_export(self) -> str | None:
        """The prior a SavedModel of this run samples with: the one trained last (config.json's `prior`), else another
        the folder holds, so long as it was trained on the VQ-VAE the folder holds now (see `outdated_priors`)."""
        current = [name for name in self.held_priors() if name not in self.outdated_priors()]
        if not current:
            return None
        last = self.read_config().prior
        return last if last in current else current[0]

    def outdated_priors(self) -> list[str]:
        """The held priors trained on the codes of a VQ-VAE that has since trained further."""
        vqvae_epochs = self.checkpoints(VQVAE_STAGE).epochs()
        return [name for name in self.held_priors()
                if self.checkpoints(name).changes({"vqvae_epochs": vqvae_epochs})]

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

    def read_anomaly_calibration(self, prior: str) -> dict | None:
        """The prior's anomaly calibration (see `keras_vqvae.anomaly.calibrate_threshold`), or None when there is
        none or it is damaged (it is calibrated again: it depends on the run's models and validation slices only)."""
        try:
            calibration = json.loads(self.anomaly_path(prior).read_text())
            float(calibration["threshold"]), float(calibration["percentile"])
            return calibration
        except (OSError, ValueError, TypeError, KeyError):
            return None

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

    def read_codes(self, vqvae_epochs: int) -> dict[str, np.ndarray] | None:
        """Each split's code maps, when they were made by the VQ-VAE after `vqvae_epochs` epochs; else None (also,
        with a note, when the file is damaged: they are made again)."""
        path = self.path / self.CODES_FILE
        if not path.exists():
            return None
        try:
            with np.load(path) as saved:
                if int(saved["vqvae_epochs"]) != vqvae_epochs:
                    return None
                return {name: saved[name] for name in saved.files if name != "vqvae_epochs"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            print(f"note: {path} is damaged ({error}), so the code maps are made again")
            return None

    def write_codes(self, codes: dict[str, np.ndarray], vqvae_epochs: int) -> None:
        temporary = self.path / "codes.tmp.npz"
        np.savez_compressed(temporary, vqvae_epochs=vqvae_epochs, **codes)
        os.replace(temporary, self.path / self.CODES_FILE)

    def save_model(self, stage: str, model: keras.Model) -> None:
        """The trained model of stage 'vqvae', of a prior, or the 'position_network'."""
        path = {VQVAE_STAGE: self.model_path, "position_network": self.position_network_path}.get(
            stage, self.prior_path(stage))
        save_atomically(model, path)

    def load_position_network(self) -> keras.Model | None:
        """The kept slice-position network, or None when there is none or it is damaged (it is trained again: it
        depends on the training slices only, and takes a minute or two)."""
        path = self.position_network_path
        return keras.saving.load_model(path) if path.exists() and not damage(path) else None

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
        if not self.is_run():
            raise InputError(f"{self.path} is not a run folder made by keras_vqvae.train (it has no "
                             f"{self.CONFIG_FILE}): give the --run-dir of a training run")
        config = self.read_config()
        stages = (VQVAE_STAGE, prior) if prior else (VQVAE_STAGE,)
        for stage in stages:  # both are there before either is loaded
            self._model_file(stage)
        return config, self.load_model(VQVAE_STAGE), self.load_model(prior) if prior else None
