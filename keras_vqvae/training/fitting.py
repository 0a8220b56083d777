"""Resumable training: `fit` with a checkpoint after every epoch, resumed from the last one by the same call."""

from __future__ import annotations

import time
from typing import Callable

import keras

from keras_vqvae.training.run_folder import CheckpointFolder


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
    and training starts afresh. `callbacks` run before the checkpoint, so what they add to the logs is kept in the
    history. Returns the model and its per-epoch history.
    """
    tag = tag or {}
    state = checkpoints.state()
    changed = {key: state.get(key) for key, value in tag.items() if state is not None and state.get(key) != value}
    if changed:
        stale = checkpoints.set_aside()
        then = ", ".join(f"{key} {value} (now {tag[key]})" for key, value in changed.items())
        print(f"{checkpoints.path} was trained from or with something that has changed since ({then}), so it starts "
              f"afresh; the old checkpoints are in {stale}")
        state = None
    if state is None:
        model, history, first_epoch = build(), [], 0
    else:
        model = checkpoints.load_model(state)
        history, first_epoch = state["history"], state["epoch"]
        print(f"resuming {checkpoints.path} after epoch {first_epoch} of {epochs}")
    model.jit_compile = jit_compile  # this run's choice, whatever the checkpoint was trained with
    if first_epoch < epochs:
        callbacks = [*(callbacks or []), EpochCheckpoint(checkpoints, history, tag),
                     keras.callbacks.TensorBoard(str(logs))]
        model.fit(train_data, validation_data=validate_data, epochs=epochs, initial_epoch=first_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)  # the pipelines shuffle
    return model, history
