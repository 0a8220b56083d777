"""`python -m keras_vqvae.train`: train a VQ-VAE into a run folder; running the same command again resumes it.

The run folder holds:

    config.json                  the run's TrainConfig
    checkpoints/epoch_NNN.keras  model and optimizer state after the last finished epoch
    checkpoints/state.json       which checkpoint is current, the epoch count and the per-epoch history
    history.csv                  per-epoch training and validation metrics
    logs/                        TensorBoard logs
    vqvae.keras                  the trained model
    metrics.json                 validation and test metrics, training throughput
    plots/                       loss curves; originals beside reconstructions

A run killed at any moment (even with SIGKILL) loses at most the epoch in progress: each checkpoint is written to a
new file first, and `state.json`, replaced atomically, is what makes it current.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_vqvae import cli, plots
from keras_vqvae.config import CONFIG_FILE, TrainConfig
from keras_vqvae.data import SubjectSplit, load_slices, make_dataset, pixel_variance
from keras_vqvae.errors import InputError
from keras_vqvae.networks import Decoder, Encoder
from keras_vqvae.quantizer import VectorQuantizer
from keras_vqvae.vqvae import VQVAE

STATE_FILE = "state.json"
MODEL_FILE = "vqvae.keras"
METRICS_FILE = "metrics.json"
FINAL_LEARNING_RATE_FRACTION = 0.02


def build_vqvae(config: TrainConfig, data_variance: float, steps_per_epoch: int) -> VQVAE:
    """The VQ-VAE and its optimizer (Adam, cosine-decayed learning rate) as `config` describes them."""
    codebook_by_loss = {"ema_decay": None} if config.codebook_update == "loss" else {}  # else the EMA default
    model = VQVAE(
        Encoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling),
        VectorQuantizer(config.num_embeddings, config.embedding_dim, beta=config.beta,
                        dead_code_steps=config.dead_code_steps, **codebook_by_loss),
        Decoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling),
        data_variance=data_variance)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch,
                                                      alpha=FINAL_LEARNING_RATE_FRACTION)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    return model


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: the model (with optimizer state) to a new file, then `state.json` pointing at it.

    Each history row also gets `seconds` (the whole epoch) and `train_seconds` (until validation starts).
    """

    def __init__(self, folder: Path, history: list[dict[str, float]]):
        super().__init__()
        self.folder, self.history = folder, history
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
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1:03d}.keras"
        self.model.save(self.folder / name)
        state = {"epoch": epoch + 1, "checkpoint": name, "history": self.history}
        _write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=1))
        for old in self.folder.glob("epoch_*.keras"):
            if old.name != name:
                old.unlink()


def _load_state(folder: Path) -> dict | None:
    path = folder / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if not (folder / state["checkpoint"]).exists():
        raise InputError(f"{path} names {state['checkpoint']}, which is missing: delete {folder} to start over")
    return state


def _write_history_csv(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", *history[0]])
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **row})


def train(config: TrainConfig, verbose: int | str = "auto") -> dict:
    """Trains (or resumes) the run `config` describes; returns the metrics also written to metrics.json."""
    run = config.run_path
    if (run / CONFIG_FILE).exists():
        config.check_resumable_from(TrainConfig.load(run))
    elif run.exists() and any(run.iterdir()):
        raise InputError(f"{run} exists and is not a keras_vqvae run folder: give a new or empty --run-dir")
    config.save()
    checkpoints = run / "checkpoints"
    state = _load_state(checkpoints)  # before the data, so that a broken run folder is reported at once

    slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    print(slices.summary())
    for note in slices.notes:
        print(f"note: {note}")
    train_data = make_dataset(slices.train, config.image_size, config.batch_size, training=True, seed=config.seed)
    validate_data = make_dataset(slices.validate, config.image_size, config.batch_size)
    test_data = make_dataset(slices.test, config.image_size, config.batch_size)
    steps_per_epoch = math.ceil(len(slices.train) / config.batch_size)

    if state is None:
        keras.utils.set_random_seed(config.seed)
        model = build_vqvae(config, pixel_variance(train_data), steps_per_epoch)
        history, first_epoch = [], 0
    else:
        model = keras.saving.load_model(checkpoints / state["checkpoint"])
        history, first_epoch = state["history"], state["epoch"]
        print(f"resuming {run} after epoch {first_epoch} of {config.epochs}")

    if first_epoch < config.epochs:
        callbacks = [EpochCheckpoint(checkpoints, history), keras.callbacks.TensorBoard(str(run / "logs"))]
        model.fit(train_data, validation_data=validate_data, epochs=config.epochs, initial_epoch=first_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)  # the pipeline shuffles
    model.save(run / MODEL_FILE)
    _write_history_csv(history, run / "history.csv")

    train_seconds = sum(row["train_seconds"] for row in history)
    results = {
        "data": slices.summary(), "notes": list(slices.notes), "epochs": len(history),
        "seconds": round(sum(row["seconds"] for row in history), 1),  # training and validation
        "train_seconds": round(train_seconds, 1),
        "train_images_per_second": round(len(history) * len(slices.train) / train_seconds, 1),
        "validate": model.evaluate(validate_data, return_dict=True, verbose=0),
        "test": model.evaluate(test_data, return_dict=True, verbose=0),
    }
    _write_atomically(run / METRICS_FILE, json.dumps(results, indent=2) + "\n")
    _plot(model, history, test_data, results["test"], run / "plots")
    return results


def _plot(model: VQVAE, history, test_data, test_metrics, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    plots.plot_history(history, folder / "loss.png")
    images = np.concatenate([batch.numpy() for batch in test_data])
    chosen = images[np.linspace(0, len(images) - 1, 8).astype(int)]  # spread over subjects and slice positions
    reconstructions = np.clip(model.reconstruct(chosen).numpy() + 0.5, 0.0, 1.0)
    title = (f"test: SSIM {test_metrics['ssim']:.3f}, brain SSIM {test_metrics['brain_ssim']:.3f}, "
             f"PSNR {test_metrics['psnr']:.1f} dB")
    plots.plot_reconstructions(chosen + 0.5, reconstructions, folder / "reconstructions.png", title)


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.train", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(parser, TrainConfig)
    config = cli.config_from_arguments(TrainConfig, parser.parse_args(argv))
    results = train(config, verbose=1 if sys.stdout.isatty() else 2)
    test = results["test"]
    print(f"test: ssim {test['ssim']:.4f}, brain_ssim {test['brain_ssim']:.4f}, psnr {test['psnr']:.2f} dB, "
          f"codebook_usage {test['codebook_usage']:.2f}, perplexity {test['perplexity']:.1f}; "
          f"run folder {config.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
