"""A stage's checkpoints, and the atomic writes every file of a run folder goes through.

Every file is written whole or not at all (to a temporary name, then renamed): a run killed at any moment, even with
SIGKILL, loses at most the epoch in progress. A .keras file damaged afterwards is recognised by its zip directory
and checksums (`damage`).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
import zlib
from pathlib import Path

import keras

from keras_vqvae.errors import InputError


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
