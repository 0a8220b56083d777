"""`python -m keras_vqvae.train`: train a VQ-VAE, then a prior over its codes (a gated PixelCNN or a DCGAN), into a
run folder; running the same command again resumes it.

The run folder holds:

    config.json                        the run's TrainConfig
    checkpoints/epoch_NNN.keras        VQ-VAE and optimizer state after the last finished epoch
    checkpoints/state.json             which checkpoint is current, the epoch count and the per-epoch history
    history.csv                        per-epoch training and validation metrics of the VQ-VAE
    vqvae.keras                        the trained VQ-VAE
    codes.npz                          its code maps of every split (the priors' data)
    PRIOR_checkpoints/, PRIOR_history.csv, PRIOR.keras
                                       the same for each prior trained, PRIOR being pixelcnn or dcgan
    logs/                              TensorBoard logs (vqvae/, pixelcnn/, dcgan/)
    metrics.json                       test metrics of each stage, generation metrics, training throughput
    plots/                             loss curves; originals beside reconstructions; PRIOR_samples.png
    saved_model/                       the VQ-VAE and the prior just trained as a TensorFlow SavedModel, with its
                                       model card README.md (see keras_vqvae.export)

A run killed at any moment (even with SIGKILL) loses at most the epoch in progress: each checkpoint is written to a
new file first, and `state.json`, replaced atomically, is what makes it current.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_vqvae import cli, plots
from keras_vqvae.batching import apply_in_batches
from keras_vqvae.config import CONFIG_FILE, TrainConfig
from keras_vqvae.data import SubjectSplit, load_slices, make_code_dataset, make_dataset, pixel_variance
from keras_vqvae.distribute import make_strategy, precision
from keras_vqvae.errors import InputError
from keras_vqvae.export import EXPORT_FOLDER, export_run
from keras_vqvae.metrics import generation_metrics
from keras_vqvae.networks import Decoder, Encoder
from keras_vqvae.generation import DiversityMonitor, collapse_warning, generate
from keras_vqvae.priors import GatedPixelCNN, LatentDCGAN
from keras_vqvae.quantizer import VectorQuantizer
from keras_vqvae.runs import MODEL_FILE, PRIORS, prior_file
from keras_vqvae.vqvae import VQVAE

STATE_FILE = "state.json"
CODES_FILE = "codes.npz"
METRICS_FILE = "metrics.json"
STAGES = ("vqvae", "prior", "all")
FINAL_LEARNING_RATE_FRACTION = 0.02
ENCODING_BATCH_SIZE = 64


def _adam(peak_learning_rate: float, epochs: int, steps_per_epoch: int) -> keras.optimizers.Adam:
    """Adam whose learning rate decays along a cosine from its peak to 2% of it over the whole run."""
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        peak_learning_rate, epochs * steps_per_epoch, alpha=FINAL_LEARNING_RATE_FRACTION))


def build_vqvae(config: TrainConfig, data_variance: float, steps_per_epoch: int) -> VQVAE:
    """The VQ-VAE and its optimizer as `config` describes them."""
    codebook_by_loss = {"ema_decay": None} if config.codebook_update == "loss" else {}  # else the EMA default
    model = VQVAE(
        Encoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling),
        VectorQuantizer(config.num_embeddings, config.embedding_dim, beta=config.beta,
                        dead_code_steps=config.dead_code_steps, **codebook_by_loss),
        Decoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling),
        data_variance=data_variance)
    model.compile(optimizer=_adam(config.learning_rate, config.epochs, steps_per_epoch))
    return model


def build_pixelcnn(config: TrainConfig, grid_shape: tuple[int, int], num_classes: int,
                   steps_per_epoch: int) -> GatedPixelCNN:
    """The gated PixelCNN prior over code maps of `grid_shape`, and its optimizer, as `config` describes them."""
    prior = GatedPixelCNN(config.num_embeddings, grid_shape, config.pixelcnn_filters, config.pixelcnn_layers,
                          config.pixelcnn_kernel_size, num_classes)
    prior.compile(optimizer=_adam(config.pixelcnn_learning_rate, config.pixelcnn_epochs, steps_per_epoch))
    return prior


def build_dcgan(config: TrainConfig, quantizer: VectorQuantizer, grid_shape: tuple[int, int]) -> LatentDCGAN:
    """The DCGAN prior over latent maps of `grid_shape` and its two optimizers (Adam with beta_1 0.5 and a constant
    learning rate, as in the DCGAN paper), as `config` describes them."""
    prior = LatentDCGAN(quantizer, grid_shape, config.dcgan_noise_dim, config.dcgan_filters, config.dcgan_snapping,
                        seed=config.seed)
    prior.compile(*(keras.optimizers.Adam(config.dcgan_learning_rate, beta_1=0.5) for _ in range(2)))
    return prior


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: the model (with optimizer state) to a new file, then `state.json` pointing at it.

    Each history row also gets `seconds` (the whole epoch) and `train_seconds` (until validation starts); `tag`
    (what the model was trained from) is stored in the state too.
    """

    def __init__(self, folder: Path, history: list[dict[str, float]], tag: dict):
        super().__init__()
        self.folder, self.history, self.tag = folder, history, tag
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
        state = {"epoch": epoch + 1, "checkpoint": name, **self.tag, "history": self.history}
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


def _fit_resumably(build, folder: Path, epochs: int, train_data, validate_data, logs: Path, verbose,
                   tag: dict | None = None, callbacks: list | None = None,
                   jit_compile: bool = False) -> tuple[keras.Model, list[dict]]:
    """Trains the model `build()` makes, or resumes the one checkpointed in `folder`, up to `epochs` epochs, with
    its training steps compiled by XLA when `jit_compile`.

    A checkpoint whose `tag` differs (it was trained from, or with, something that has changed since) is set aside
    and training starts afresh. `callbacks` run before the checkpoint, so what they add to the logs is kept in the
    history. Returns the model and its per-epoch history.
    """
    tag = tag or {}
    state = _load_state(folder)
    changed = {key: state.get(key) for key, value in tag.items() if state is not None and state.get(key) != value}
    if changed:
        stale = folder.with_name(folder.name + "_stale")
        shutil.rmtree(stale, ignore_errors=True)
        folder.rename(stale)
        then = ", ".join(f"{key} {value} (now {tag[key]})" for key, value in changed.items())
        print(f"{folder} was trained from or with something that has changed since ({then}), so it starts afresh; "
              f"the old checkpoints are in {stale}")
        state = None
    if state is None:
        model, history, first_epoch = build(), [], 0
    else:
        model = keras.saving.load_model(folder / state["checkpoint"])
        history, first_epoch = state["history"], state["epoch"]
        print(f"resuming {folder} after epoch {first_epoch} of {epochs}")
    model.jit_compile = jit_compile  # this run's choice, whatever the checkpoint was trained with
    if first_epoch < epochs:
        callbacks = [*(callbacks or []), EpochCheckpoint(folder, history, tag), keras.callbacks.TensorBoard(str(logs))]
        model.fit(train_data, validation_data=validate_data, epochs=epochs, initial_epoch=first_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)  # the pipelines shuffle
    return model, history


def _write_history_csv(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", *history[0]])
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **row})


def _timing(history: list[dict[str, float]], examples_per_epoch: int, unit: str) -> dict:
    train_seconds = sum(row["train_seconds"] for row in history)
    return {"epochs": len(history), "seconds": round(sum(row["seconds"] for row in history), 1),  # with validation
            "train_seconds": round(train_seconds, 1),
            f"train_{unit}_per_second": round(len(history) * examples_per_epoch / train_seconds, 1)}


def train(config: TrainConfig, stage: str = "all", prior: str = "pixelcnn", verbose: int | str = "auto") -> dict:
    """Trains (or resumes) the stages of the run `config` describes: 'vqvae', 'prior' (needs a trained VQ-VAE in
    the run folder) or 'all', with `prior` 'pixelcnn' or 'dcgan'. Returns the metrics also written to metrics.json:
    a section per stage ('vqvae', 'pixelcnn', 'dcgan'); a prior's holds its generation metrics."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    if prior not in PRIORS:
        raise InputError(f"unknown prior {prior!r}: choose one of {', '.join(PRIORS)}")
    run = config.run_path
    if (run / CONFIG_FILE).exists():
        config.check_resumable_from(TrainConfig.load(run))
    elif run.exists() and any(run.iterdir()):
        raise InputError(f"{run} exists and is not a keras_vqvae run folder: give a new or empty --run-dir")
    if stage == "prior" and not (run / MODEL_FILE).exists():
        raise InputError(f"{run} holds no trained VQ-VAE ({MODEL_FILE}): train it first with --stage vqvae "
                         f"(or --stage all, the default)")
    strategy = make_strategy(config.strategy)  # before anything is written: a missing TPU or TF_CONFIG is reported
    config.save()
    for folder in ("checkpoints", *(f"{name}_checkpoints" for name in PRIORS)):
        _load_state(run / folder)  # before the data, so that a broken run folder is reported at once

    slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    print(slices.summary())
    for note in slices.notes:
        print(f"note: {note}")
    if config.condition == "slice" and min(min(s.slice_numbers) for s in slices.splits()) < 0:
        raise InputError("--condition slice needs slice numbers in the file names (like case_001_slice_0.png), and "
                         "some names carry none: rename the files, or use --condition none")
    images = {split.name: make_dataset(split, config.image_size, config.batch_size, cache=config.cache)
              for split in slices.splits()}
    metrics_path = run / METRICS_FILE
    results = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    results.update({"data": slices.summary(), "notes": list(slices.notes)})

    with precision(config.mixed_precision), strategy.scope():  # models are built and loaded inside
        if stage == "prior":
            vqvae = keras.saving.load_model(run / MODEL_FILE)
        else:
            vqvae, results["vqvae"] = _train_vqvae(config, slices, images, verbose)
            _write_atomically(metrics_path, json.dumps(results, indent=2) + "\n")
        if stage != "vqvae":
            results[prior] = _train_prior(config, prior, slices, images, vqvae, verbose)
            _write_atomically(metrics_path, json.dumps(results, indent=2) + "\n")
    exported = export_run(run, run / EXPORT_FOLDER, None if stage == "vqvae" else prior)
    print(f"exported the VQ-VAE{'' if stage == 'vqvae' else ' and the ' + prior} as a SavedModel to {exported}")
    return results


def _train_vqvae(config: TrainConfig, slices, images: dict, verbose) -> tuple[VQVAE, dict]:
    run = config.run_path
    train_data = make_dataset(slices.train, config.image_size, config.batch_size, training=True, seed=config.seed,
                              cache=config.cache)
    steps_per_epoch = math.ceil(len(slices.train) / config.batch_size)

    def build():
        keras.utils.set_random_seed(config.seed)
        return build_vqvae(config, pixel_variance(train_data), steps_per_epoch)

    model, history = _fit_resumably(build, run / "checkpoints", config.epochs, train_data, images["validate"],
                                    run / "logs" / "vqvae", verbose, jit_compile=config.jit_compile)
    model.save(run / MODEL_FILE)
    _write_history_csv(history, run / "history.csv")
    results = {**_timing(history, len(slices.train), "images"),
               **_evaluate(model, {split: images[split] for split in ("validate", "test")}, verbose)}
    _plot_vqvae(model, history, images["test"], results["test"], run / "plots")
    return model, results


def _plot_vqvae(model: VQVAE, history, test_data, test_metrics, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    plots.plot_history(history, folder / "loss.png")
    images = np.concatenate([batch.numpy() for batch in test_data]) + 0.5  # (N, H, W, 1) in [0, 1]
    chosen = np.linspace(0, len(images) - 1, 8).astype(int)  # spread over subjects and slice positions
    reconstructions = np.clip(model.reconstruct(images[chosen] - 0.5).numpy() + 0.5, 0.0, 1.0)
    title = (f"test: SSIM {test_metrics['ssim']:.3f}, brain SSIM {test_metrics['brain_ssim']:.3f}, "
             f"PSNR {test_metrics['psnr']:.1f} dB")
    plots.plot_reconstructions(images[chosen], reconstructions, folder / "reconstructions.png", title)
    codes = encode_images(model, test_data, verbose=0)  # (N, h, w)
    num_embeddings = model.quantizer.num_embeddings
    plots.plot_code_maps(images[chosen], codes[chosen], num_embeddings, folder / "code_maps.png",
                         f"test slices and their code indices, one colour per code (of {num_embeddings})")
    plots.plot_codebook_usage(codes, num_embeddings, folder / "codebook_usage.png",
                              f"codebook usage on test: {np.count_nonzero(np.bincount(codes.ravel()))} of "
                              f"{num_embeddings} codes used, perplexity {test_metrics['perplexity']:.1f}")


def encode_images(vqvae: VQVAE, dataset, verbose: int = 1) -> np.ndarray:
    """Code maps (N, h, w) int32 of every batch of images in `dataset`; progress as keras.utils.Progbar's `verbose`
    (0 silent, 1 a bar, 2 a line at the end)."""
    return apply_in_batches(vqvae.encode, dataset, verbose)


def _evaluate(model: keras.Model, splits: dict, verbose) -> dict[str, dict[str, float]]:
    """model.evaluate on each named dataset of `splits`, each announced and with a progress bar unless verbose is 0."""
    results = {}
    for split, dataset in splits.items():
        if verbose:
            print(f"evaluating {model.name} on the {split} split")
        results[split] = model.evaluate(dataset, return_dict=True, verbose=_progress(verbose))
    return results


def _progress(verbose) -> int:
    """Progbar's verbosity for fit's: 'auto' and 1 show a bar, 2 a line at the end, 0 nothing."""
    return 1 if verbose == "auto" else int(verbose)


def _code_maps(config: TrainConfig, slices, vqvae: VQVAE, vqvae_epochs: int, verbose) -> dict[str, np.ndarray]:
    """Each split's code maps, from codes.npz when it was made by this VQ-VAE, else encoded now and saved there."""
    path = config.run_path / CODES_FILE
    if path.exists():
        with np.load(path) as saved:
            if int(saved["vqvae_epochs"]) == vqvae_epochs:
                return {split.name: saved[split.name] for split in slices.splits()}
    if verbose:
        print(f"encoding every split into code maps with the VQ-VAE (kept in {path})")
    codes = {split.name: encode_images(vqvae, make_dataset(split, config.image_size, ENCODING_BATCH_SIZE,
                                                           cache="none"),  # one pass: nothing to keep
                                       verbose=_progress(verbose))
             for split in slices.splits()}
    temporary = path.with_name("codes.tmp.npz")
    np.savez_compressed(temporary, vqvae_epochs=vqvae_epochs, **codes)
    os.replace(temporary, path)
    return codes


def _train_prior(config: TrainConfig, name: str, slices, images: dict, vqvae: VQVAE, verbose) -> dict:
    """Trains (or resumes) the prior `name` on the VQ-VAE's code maps, then generates and scores new slices."""
    run = config.run_path
    vqvae_epochs = _load_state(run / "checkpoints")["epoch"] if (run / "checkpoints").exists() else 0
    codes = _code_maps(config, slices, vqvae, vqvae_epochs, verbose)
    grid_shape = codes["train"].shape[1:]
    test_images = np.concatenate([batch.numpy() for batch in images["test"]]) + 0.5
    train_images = np.concatenate([batch.numpy() for batch in images["train"]]) + 0.5
    if name == "pixelcnn":
        conditional = config.condition == "slice"
        labels = {s.name: np.array(s.slice_numbers) if conditional else None for s in slices.splits()}
        num_classes = int(max(max(s.slice_numbers) for s in slices.splits())) + 1 if conditional else 0
        batch_size, epochs, callbacks = config.pixelcnn_batch_size, config.pixelcnn_epochs, []
        steps_per_epoch = math.ceil(len(codes["train"]) / batch_size)

        def build():
            return build_pixelcnn(config, grid_shape, num_classes, steps_per_epoch)
    else:
        labels = dict.fromkeys(codes)
        batch_size, epochs = min(config.dcgan_batch_size, len(codes["train"])), config.dcgan_epochs
        callbacks = [DiversityMonitor(vqvae, real_images=test_images, seed=config.seed)]

        def build():
            return build_dcgan(config, vqvae.quantizer, grid_shape)

    def dataset(split, training=False):
        return make_code_dataset(codes[split], batch_size, labels=labels[split], training=training, seed=config.seed,
                                 drop_remainder=training and name == "dcgan")  # no tiny last batch for batch norm

    def seeded_build():
        keras.utils.set_random_seed(config.seed)
        return build()

    model, history = _fit_resumably(seeded_build, run / f"{name}_checkpoints", epochs, dataset("train", True),
                                    dataset("validate"), run / "logs" / name, verbose, callbacks=callbacks,
                                    tag={"vqvae_epochs": vqvae_epochs, **config.prior_settings(name)},
                                    jit_compile=config.jit_compile)
    model.save(run / prior_file(name))
    _write_history_csv(history, run / f"{name}_history.csv")
    results = {**_timing(history, len(codes["train"]), "maps"),
               **_evaluate(model, {split: dataset(split) for split in ("validate", "test")}, verbose)}

    started = time.perf_counter()
    generated, _ = generate(vqvae, model, config.num_generated, seed=config.seed, temperature=config.temperature,
                            verbose=_progress(verbose))
    sampling_seconds = time.perf_counter() - started
    if verbose:
        print(f"comparing {len(generated)} generated slices with the test and training slices")
    results["generation"] = {**generation_metrics(generated, test_images, train_images, seed=config.seed),
                             "temperature": config.temperature, "sampling_seconds": round(sampling_seconds, 1)}
    warning = collapse_warning(results["generation"])
    if warning:
        print(f"warning: {warning}")
    _plot_prior(name, history, generated, results, run / "plots")
    return results


def _plot_prior(name: str, history, generated: np.ndarray, results: dict, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    plots.plot_history(history, folder / f"{name}_loss.png")
    generation = results["generation"]
    fit = f"test NLL {results['test']['nll']:.2f} bits/code, " if name == "pixelcnn" else ""
    title = (f"{name} (temperature {generation['temperature']:g}): {fit}"
             f"best-match SSIM to test {generation['generated_test_ssim']:.2f}, "
             f"MS-SSIM diversity {generation['diversity_ms_ssim']:.2f} "
             f"(real {generation['real_diversity_ms_ssim']:.2f})")
    plots.plot_grid(generated[..., 0], folder / f"{name}_samples.png", columns=8, title=title)


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="all",
                        help="what to train: the VQ-VAE, the prior over its codes (needs a trained VQ-VAE in the run "
                             "folder), or both (default: all)")
    parser.add_argument("--prior", choices=PRIORS, default="pixelcnn",
                        help="which prior: the gated PixelCNN, or a DCGAN over latent maps; a run folder can hold "
                             "one of each, trained on the same VQ-VAE (default: pixelcnn)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or stage messages, for scripts: only notes, warnings and the final "
                             "figures")
    cli.add_config_arguments(parser, TrainConfig)
    arguments = parser.parse_args(argv)
    config = cli.config_from_arguments(TrainConfig, arguments)
    verbose = 0 if arguments.quiet else 1 if sys.stdout.isatty() else 2
    results = train(config, arguments.stage, arguments.prior, verbose=verbose)
    if "vqvae" in results and arguments.stage != "prior":
        test = results["vqvae"]["test"]
        print(f"VQ-VAE test: ssim {test['ssim']:.4f}, brain_ssim {test['brain_ssim']:.4f}, psnr {test['psnr']:.2f} dB, "
              f"codebook_usage {test['codebook_usage']:.2f}, perplexity {test['perplexity']:.1f}")
    if arguments.stage != "vqvae":
        prior = results[arguments.prior]
        print(f"{arguments.prior} test: " + _listed(prior["test"]))
        print("generation: " + _listed(prior["generation"]))
    print(f"run folder {config.run_dir}")
    return 0


def _listed(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


if __name__ == "__main__":
    sys.exit(main())
