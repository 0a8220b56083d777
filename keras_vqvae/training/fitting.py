"""Resumable training: `fit` with a checkpoint after every epoch, resumed from the last one by the same call, and
stopped at once when a loss stops being a finite number."""

from __future__ import annotations

import math
import time
from typing import Callable

import keras

from keras_vqvae.training.checkpoints import CheckpointFolder


class Diverged(Exception):
    """Training diverged: `loss` became `value` (nan or infinite) in `epoch` (counted from 1), at training step
    `step` of it or, when `step` is None, in validation. The epoch was not saved: every earlier one was."""

    def __init__(self, epoch: int, step: int | None, loss: str, value: float):
        super().__init__(f"{loss} became {value} in epoch {epoch}" + (f", step {step}" if step else ", in validation"))
        self.epoch, self.step, self.loss, self.value = epoch, step, loss, value


class StopOnDivergence(keras.callbacks.Callback):
    """Raises `Diverged` after the first training step, or the first validation, whose logs hold a loss that is not
    a finite number, so that training stops before the epoch's checkpoint or any other callback sees the broken
    model (Keras' `TerminateOnNaN` lets the epoch end, checkpoint included, or raises naming no epoch)."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, step=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, step=None)

    def _check(self, logs, step):
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not math.isfinite(float(value)):
                raise Diverged(self._epoch + 1, step, name, float(value))


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: the model (with optimizer state) saved into a `CheckpointFolder` with the history so far.

    Each history row also gets `seconds` (the whole epoch) and `train_seconds` (until validation starts); `tag`
    (what the model was trained from) is stored in the state too.
    """

    def __init__(self, checkpoints: CheckpointFolder, history: list[dict[str, float]], tag: dict):
        super().__init__()
        self.checkpoints, self.history, self.tag = checkpoints, history, tag
        self._started = self._validating = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = self._validating = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._validating = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        ended = time.perf_counter()
        train_seconds = (self._validating if self._validating > self._started else ended) - self._started
        self.history.append({**{k: float(v) for k, v in logs.items()}, "seconds": ended - self._started,
                             "train_seconds": train_seconds})
        self.checkpoints.save(self.model, epoch + 1, self.history, self.tag)


def fit_resumably(build: Callable[[], keras.Model], checkpoints: CheckpointFolder, epochs: int, train_data,
                  validate_data, logs, verbose, tag: dict | None = None, callbacks: list | None = None,
                  jit_compile: bool = False) -> tuple[keras.Model, list[dict]]:
    """Trains the model `build()` makes, or resumes the one in `checkpoints`, up to `epochs` epochs, with its
    training steps compiled by XLA when `jit_compile`; TensorBoard logs go to the folder `logs`.

    A checkpoint whose `tag` differs (it was trained from, or with, something that has changed since) is set aside
    and training starts afresh; a damaged newest checkpoint is passed over for the one before it, saying so.
    `callbacks` run before the checkpoint, so what they add to the logs is kept in the history. A loss that becomes
    nan or infinite raises `Diverged` before that epoch is saved. Returns the model and its per-epoch history.
    """
    tag = tag or {}
    changed = checkpoints.changes(tag)
    if changed:
        stale = checkpoints.set_aside()
        then = ", ".join(f"{key} {value} (now {tag[key]})" for key, value in changed.items())
        print(f"{checkpoints.path} was trained from or with something that has changed since ({then}), so it starts "
              f"afresh; the old checkpoints are in {stale}")
    state = checkpoints.state()
    if state is None:
        model, history, first_epoch = build(), [], 0
    else:
        model = checkpoints.load_model(state)
        history, first_epoch = state["history"], state["epoch"]
        passed_over = (f" ({state['passed_over']}, so the checkpoint before it is used)" if "passed_over" in state
                       else "")
        print(f"resuming {checkpoints.path} after epoch {first_epoch} of {epochs}{passed_over}")
    model.jit_compile = jit_compile  # this run's choice, whatever the checkpoint was trained with
    if first_epoch < epochs:
        callbacks = [StopOnDivergence(), *(callbacks or []), EpochCheckpoint(checkpoints, history, tag),
                     keras.callbacks.TensorBoard(str(logs))]
        model.fit(train_data, validation_data=validate_data, epochs=epochs, initial_epoch=first_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)  # the pipelines shuffle
    return model, history
