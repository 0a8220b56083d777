"""The two stages of a run, each an object with one life: build or resume, fit, evaluate, write.

* `VQVAEStage`: the VQ-VAE on the training slices, evaluated on the validation and test splits, with its pictures.
* `PriorStage`: a prior over the VQ-VAE's code maps, evaluated, its anomaly threshold calibrated on the validation
  split (priors that make anomaly maps), then new slices drawn from it with their sample grid.

Nothing here reads the test split while a model trains: monitors and callbacks see the validation split. The
scoring of the drawn slices against real ones is `keras_vqvae.training.scoring`.
"""

from __future__ import annotations

import functools
import math
import time

import keras
import numpy as np

from keras_vqvae import plots
from keras_vqvae.anomaly import AnomalyDetector, detection_problem
from keras_vqvae.anomaly_masks import calibrate_mask_threshold, calibration_subset
from keras_vqvae.batching import apply_in_batches, slices_of
from keras_vqvae.calibration import calibrate_threshold
from keras_vqvae.data import make_code_dataset
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PriorContext, PriorKind
from keras_vqvae.priors.generation import Generation, generate
from keras_vqvae.training.builders import build_prior, build_vqvae
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.fitting import fit_resumably
from keras_vqvae.training.run_folder import VQVAE_STAGE, RunFolder
from keras_vqvae.training.splits import DECODING_BATCH_SIZE, RunSplits


def progress(verbose) -> int:
    """Progbar's verbosity for fit's: 'auto' and 1 show a bar, 2 a line at the end, 0 nothing."""
    return 1 if verbose == "auto" else int(verbose)


def evaluate(model: keras.Model, datasets: dict, verbose) -> dict[str, dict[str, float]]:
    """model.evaluate on each named dataset, each announced and with a progress bar unless verbose is 0."""
    results = {}
    for split, dataset in datasets.items():
        if verbose:
            print(f"evaluating {model.name} on the {split} split")
        results[split] = model.evaluate(dataset, return_dict=True, verbose=progress(verbose))
    return results


def timing(history: list[dict[str, float]], examples_per_epoch: int, unit: str) -> dict:
    """Training time of a stage's `history`: epochs, seconds with and without validation, examples per second."""
    train_seconds = sum(row["train_seconds"] for row in history)
    return {"epochs": len(history), "seconds": round(sum(row["seconds"] for row in history), 1),  # with validation
            "train_seconds": round(train_seconds, 1),
            f"train_{unit}_per_second": round(len(history) * examples_per_epoch / train_seconds, 1)}


def encode_images(vqvae: VQVAE, images: np.ndarray, verbose: int = 0) -> np.ndarray:
    """Code maps (n, h, w) int32 of images (n, S, S, 1) in [0, 1]; progress as keras.utils.Progbar's `verbose`."""
    return apply_in_batches(vqvae.encode, slices_of(images - 0.5, DECODING_BATCH_SIZE), verbose)


def reconstruct_images(vqvae: VQVAE, images: np.ndarray) -> np.ndarray:
    """The VQ-VAE's reconstructions (n, S, S, 1) in [0, 1] of images (n, S, S, 1) in [0, 1]."""
    return apply_in_batches(vqvae.reconstruct, slices_of(images - 0.5, DECODING_BATCH_SIZE)) + 0.5


def prior_tag(config: TrainConfig, kind: PriorKind, vqvae_epochs: int) -> dict:
    """What a prior of `kind` is trained from and with: changing any of it trains the prior afresh."""
    return {"vqvae_epochs": vqvae_epochs, **config.prior_tag(kind)}


class VQVAEStage:
    """Trains (or resumes) the run's VQ-VAE, evaluates it on the validation and test splits and draws its pictures.

    Args:
        config: the run's configuration.
        run: its folder.
        splits: its slices.
        verbose: fit's verbosity.
    """

    def __init__(self, config: TrainConfig, run: RunFolder, splits: RunSplits, verbose):
        self.config, self.run, self.splits, self.verbose = config, run, splits, verbose

    @functools.cached_property
    def training_batches(self):
        """The training split as the VQ-VAE learns it (`RunSplits.training_batches`), made on first use: the data's
        variance and every epoch read this one pipeline, so its decoded slices are kept (as `config.cache` says)
        once, and its shuffle goes on from one reading to the next."""
        return self.splits.training_batches()

    @property
    def fresh(self) -> bool:
        """Whether no epoch of the VQ-VAE is kept yet (so it is built anew, and needs the data's variance)."""
        return self.run.checkpoints(VQVAE_STAGE).recorded() is None

    def fit(self, data_variance: float | None) -> tuple[VQVAE, list[dict]]:
        """The VQ-VAE trained up to `config.epochs`, resumed from its checkpoints; `data_variance` (of the training
        pixels) builds a new one."""
        config = self.config
        steps_per_epoch = math.ceil(len(self.splits.slices.train) / config.batch_size)

        def build():
            keras.utils.set_random_seed(config.seed)
            return build_vqvae(config, data_variance, steps_per_epoch)

        return fit_resumably(build, self.run.checkpoints(VQVAE_STAGE), config.epochs, self.training_batches,
                             self.splits.batches("validate"), self.run.logs(VQVAE_STAGE), self.verbose,
                             jit_compile=config.jit_compile)

    def write(self, model: VQVAE, history: list[dict]) -> dict:
        """Saves the model and its history, evaluates it and draws its pictures; returns its results."""
        self.run.save_model(VQVAE_STAGE, model)
        self.run.write_history(VQVAE_STAGE, history)
        results = {**timing(history, len(self.splits.slices.train), "images"),
                   **evaluate(model, {split: self.splits.batches(split) for split in ("validate", "test")},
                              self.verbose)}
        self._plot(model, history, results["test"])
        return results

    def _plot(self, model: VQVAE, history: list[dict], test_metrics: dict) -> None:
        """plots/loss.png, and of 8 test slices spread over subjects and positions reconstructions.png and
        code_maps.png, and codebook_usage.png of all of them."""
        folder, num_embeddings = self.run.plots, model.quantizer.num_embeddings
        images = self.splits.images("test")
        codes = encode_images(model, images)  # (n, h, w)
        plots.plot_history(history, folder / "loss.png")
        chosen = np.linspace(0, len(images) - 1, 8).astype(int)
        title = (f"test: SSIM {test_metrics['ssim']:.3f}, brain SSIM {test_metrics['brain_ssim']:.3f}, "
                 f"PSNR {test_metrics['psnr']:.1f} dB")
        plots.plot_reconstructions(images[chosen], reconstruct_images(model, images[chosen]),
                                   folder / "reconstructions.png", title)
        plots.plot_code_maps(images[chosen], codes[chosen], num_embeddings, folder / "code_maps.png",
                             f"test slices and their code indices, one colour per code (of {num_embeddings})")
        plots.plot_codebook_usage(codes, num_embeddings, folder / "codebook_usage.png",
                                  f"codebook usage on test: {np.count_nonzero(np.bincount(codes.ravel()))} of "
                                  f"{num_embeddings} codes used, perplexity {test_metrics['perplexity']:.1f}")

    def __call__(self, data_variance: float | None) -> tuple[VQVAE, dict]:
        """Fits and writes: the trained VQ-VAE and its results."""
        model, history = self.fit(data_variance)
        vars(self).pop("training_batches", None)  # let its cache go: the prior stage holds the split once, as images
        return model, self.write(model, history)


class PriorStage:
    """Trains (or resumes) a prior of `kind` over the code maps of the run's VQ-VAE, evaluates it, calibrates its
    anomaly thresholds (priors that make anomaly maps: the codes' and the masks') and draws new slices.

    Args:
        config: the run's configuration.
        run: its folder.
        kind: the prior's kind.
        splits: the run's slices.
        vqvae: the run's trained VQ-VAE.
        verbose: fit's verbosity.
    """

    def __init__(self, config: TrainConfig, run: RunFolder, kind: PriorKind, splits: RunSplits, vqvae: VQVAE,
                 verbose):
        self.config, self.run, self.kind, self.splits, self.vqvae, self.verbose = (config, run, kind, splits, vqvae,
                                                                                     verbose)
        self.vqvae_epochs = run.vqvae_epochs()
        self.codes = self._code_maps()
        automatic = (config.condition == "auto" and splits.slices.carry_positions
                     and config.strategy != "multi-worker")  # see TrainConfig
        self.conditional = kind.conditional and (config.condition == "slice" or automatic)
        self.settings = getattr(config, kind.name)
        self.batch_size = (min(self.settings.batch_size, len(self.codes["train"])) if kind.drop_remainder
                           else self.settings.batch_size)

    def _code_maps(self) -> dict[str, np.ndarray]:
        """Each split's code maps, from the run folder when this VQ-VAE made them, else encoded now and kept there."""
        kept = self.run.read_codes(self.vqvae_epochs)
        if kept is not None and set(kept.positions) == set(self.splits.names):  # older files lack the positions
            return kept.codes
        if self.verbose:
            print(f"encoding every split into code maps with the VQ-VAE (kept in {self.run.codes_path})")
        codes = {name: encode_images(self.vqvae, self.splits.images(name), progress(self.verbose))
                 for name in self.splits.names}
        self.run.write_codes(codes, {name: self.splits.positions(name) for name in self.splits.names},
                             self.vqvae_epochs)
        return codes

    def labels(self, split: str) -> np.ndarray | None:
        """The class labels (n,) of a split's code maps: their slice positions for a conditional prior, else None."""
        return self.splits.positions(split) if self.conditional else None

    @property
    def context(self) -> PriorContext:
        return PriorContext(
            vqvae=self.vqvae, grid_shape=self.codes["train"].shape[1:], seed=self.config.seed,
            validation_images=self.splits.images("validate"),
            num_classes=self.splits.slices.num_positions if self.conditional else 0,
            steps_per_epoch=math.ceil(len(self.codes["train"]) / self.batch_size))

    def dataset(self, split: str, training: bool = False):
        return make_code_dataset(self.codes[split], self.batch_size, labels=self.labels(split), training=training,
                                 seed=self.config.seed, drop_remainder=training and self.kind.drop_remainder)

    def fit(self) -> tuple[keras.Model, list[dict]]:
        """The prior trained up to its settings' epochs, resumed from its checkpoints."""
        context = self.context

        def build():
            keras.utils.set_random_seed(self.config.seed)
            return build_prior(self.config, self.kind, context)

        return fit_resumably(build, self.run.checkpoints(self.kind.name), self.settings.epochs,
                             self.dataset("train", True), self.dataset("validate"), self.run.logs(self.kind.name),
                             self.verbose, callbacks=self.kind.callbacks(context),
                             tag=prior_tag(self.config, self.kind, self.vqvae_epochs),
                             jit_compile=self.config.jit_compile)

    def write(self, model: keras.Model, history: list[dict]) -> dict:
        """Saves the prior and its history, evaluates it and keeps its anomaly calibration; returns its results."""
        self.run.save_model(self.kind.name, model)
        self.run.write_history(self.kind.name, history)
        results = {**timing(history, len(self.codes["train"]), "maps"),
                   **evaluate(model, {split: self.dataset(split) for split in ("validate", "test")}, self.verbose)}
        if detection_problem(self.kind) is None:
            calibration = calibrate_threshold(model, self.codes["validate"], self.labels("validate"))
            chosen = calibration_subset(len(self.codes["validate"]))
            labels = self.labels("validate")
            if self.verbose:
                print(f"calibrating the anomaly masks' threshold on {len(chosen)} healthy validation slices")
            calibration["masks"] = calibrate_mask_threshold(
                AnomalyDetector(self.vqvae, model, calibration["threshold"]), self.splits.images("validate")[chosen],
                None if labels is None else labels[chosen], np.asarray(self.splits.split("validate").case_ids)[chosen],
                verbose=progress(self.verbose))
            self.run.write_anomaly_calibration(self.kind.name, calibration)
            results["anomaly_threshold"] = calibration["threshold"]
            results["anomaly_mask_threshold"] = calibration["masks"]["mask_threshold"]
        return results

    def generate(self, model: keras.Model) -> tuple[Generation, float]:
        """`config.num_generated` new slices from the prior (spread over the slice positions of a conditional one),
        and the seconds that took."""
        started = time.perf_counter()
        generation = generate(self.vqvae, model, self.config.num_generated, seed=self.config.seed,
                              temperature=self.config.temperature, batch_size=DECODING_BATCH_SIZE,
                              verbose=progress(self.verbose))
        return generation, time.perf_counter() - started

    def __call__(self) -> tuple[dict, Generation]:
        """Fits, writes and generates: the prior's results, and its generated slices."""
        model, history = self.fit()
        results = self.write(model, history)
        generation, seconds = self.generate(model)
        results["generation"] = {"temperature": self.config.temperature, "sampling_seconds": round(seconds, 1)}
        plots.plot_history(history, self.run.plots / f"{self.kind.name}_loss.png")
        return results, generation
