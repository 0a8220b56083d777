"""Anomaly maps: what in a slice a prior of healthy code maps finds unlikely, redrawn as healthy and compared.

A VQ-VAE with a prior trained on healthy slices is a model of healthy anatomy; where a slice departs from it, its
codes are unlikely under the prior. Following Pinaya et al. (2021, 2022), for slices x (batch, S, S, 1):

1. encode:  z = encode(x), the code map (batch, h, w);
2. score:   nll_p = -log2 p(z_p | z_<p, c), in bits, each code given the codes before it in raster order and the
            slice position c (the autoregressive factorisation of van den Oord et al. 2016, eq. 1; the prior's
            `code_nll`);
3. heal:    keep_p = nll_p <= threshold; the prior's sampler redraws every other code from p(z_p | z~_<p, c) (at
            `temperature`) given the codes before it, kept or redrawn (Pinaya et al.'s resampling of the
            low-likelihood tokens), D times with seeded draws: z~_1 .. z~_D; with `rounds` R > 1, each healed map
            is scored again and its codes still above the threshold redrawn, R - 1 more times;
4. compare: the healed slices x~_d = decode(z~_d); the residual r = mean_d |x - x~_d| (Pinaya et al.'s residual
            of the healed reconstruction; with `sign` 'bright' mean_d max(x - x~_d, 0), the slice brighter than
            healthy as a hyperintense lesion is, with 'dark' mean_d max(x~_d - x, 0)), kept inside the brain (the
            slice's foreground, eroded by BRAIN_EROSION pixels so that the outline's own reconstruction error is
            left out) and near redrawn codes (the resampling mask grown by one code on every side and upsampled, so
            that a healthy slice whose codes were all kept has an empty map), then smoothed by a Gaussian of
            `smoothing` pixels: the anomaly map;
5. summarise: a slice's score is the mean of its anomaly map's highest TOP_FRACTION of brain pixels.

The same maps come from `anomaly_maps`, `python -m keras_vqvae.detect` and an exported SavedModel's `anomaly`
endpoint for the same seed: all three run `AnomalyDetector.detect`. Any prior that scores codes (an
`AutoregressivePrior`, with `code_nll`) and whose sampler draws around given codes (an `InpaintingSampler`) serves:
the gated PixelCNN and the transformer do.

The plain reconstruction residual |x - decode(z)| (of the same sign), kept inside the same eroded brain and smoothed
the same way (but not limited to redrawn codes, which it has none of), is the baseline this is measured against
(`residual_maps`).

Longer than 300 lines because the detector's five steps, its settings and the result it returns are read together:
split, a reader would follow one computation across three files.

References:
    W. H. L. Pinaya, P.-D. Tudosiu, R. Gray, G. Rees, P. Nachev, S. Ourselin, M. J. Cardoso, "Unsupervised Brain
    Anomaly Detection and Segmentation with Transformers", MIDL 2021; "Unsupervised brain imaging 3D anomaly
    detection and segmentation with transformers", Medical Image Analysis 79, 2022.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.batching import compiled
from keras_vqvae.calibration import CALIBRATION_PERCENTILE, check_positions, prior_labels
from keras_vqvae.errors import InputError
from keras_vqvae.metrics.image import BRAIN_THRESHOLD
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PriorKind, kind_of, make_sampler
from keras_vqvae.priors.autoregressive import AutoregressivePrior
from keras_vqvae.priors.sampler import MAX_SEED, InpaintingSampler, sample_seeds
from keras_vqvae.settings import Check, at_least, between, check_settings, option, positive

BRAIN_EROSION = 5  # the brain mask is the foreground eroded by a 5x5 window (2 pixels at the model's size)
SIGNS = ("both", "bright", "dark")  # the residual's departures kept: either way, the slice brighter, darker
TOP_FRACTION = 0.01  # a slice's score: the mean of the highest 1% of its anomaly map inside the brain
REDRAWN_GROWTH = 3  # the map reaches a 3x3 window of codes around each redrawn one: the decoder spreads a redrawn
# code's change a few pixels beyond its own block (measured on the validation split: docs/anomaly.md)


@dataclasses.dataclass(frozen=True)
class AnomalySettings:
    """How anomaly maps are made (flags --draws, ... of `python -m keras_vqvae.detect`).

    `threshold` is in bits per code; None takes the run's calibrated threshold (the `percentile` of its healthy
    validation slices' per-code NLL, see `calibrate_threshold`)."""

    threshold: float | None = option(None, "per-code NLL in bits above which a code is redrawn (default: the run's "
                                           "calibrated threshold, the --percentile of its validation slices' codes)",
                                     Check(lambda bits: bits is None or bits > 0, "positive"), parse=float)
    percentile: float = option(CALIBRATION_PERCENTILE, "the percentile of the validation slices' per-code NLL that "
                               "calibrates the threshold: codes less likely than this share of healthy codes are "
                               "redrawn", between(50.0, 99.99))
    draws: int = option(4, "healed code maps drawn per slice; the anomaly map averages their residuals", at_least(1))
    temperature: float = option(1.0, "temperature of the healing draws: 1 draws as the prior has it, lower nearer "
                                     "its most likely code", positive)
    rounds: int = option(1, "healing rounds: each round after the first scores the healed codes again and redraws "
                            "those still above the threshold", at_least(1))
    sign: str = option("both", "the departures the maps show: both, bright (the slice brighter than healed, as "
                               "hyperintense lesions are) or dark (darker, as hypointense ones)",
                       Check(lambda sign: sign in SIGNS, "one of " + ", ".join(SIGNS)), choices=SIGNS)
    smoothing: float = option(1.0, "sigma of the Gaussian that smooths the anomaly map, in pixels of the model's "
                                   "size (0: none)", at_least(0.0))
    seed: int = option(0, "seed of the healing draws: the same seed gives the same maps", between(0, MAX_SEED))

    def __post_init__(self):
        check_settings(self)


def detection_problem(kind: PriorKind) -> str | None:
    """Why priors of `kind` cannot make anomaly maps (words that follow "the NAME prior"), or None when they can:
    the prior must score each code (an `AutoregressivePrior`'s `code_nll`) and its default sampler redraw codes
    around kept ones (an `InpaintingSampler`)."""
    if not issubclass(kind.model_class, AutoregressivePrior):
        return "cannot score single codes"
    default_sampler = {sampler.name: sampler for sampler in kind.samplers}[kind.default_sampler]
    if not issubclass(default_sampler, InpaintingSampler):
        return "has no sampler that redraws codes around kept ones"
    return None


def no_detection_error(kind: PriorKind, run_dir="RUN_DIR") -> InputError:
    """The error for a prior of `kind` asked for anomaly maps (see `detection_problem`)."""
    return InputError(f"the {kind.name} prior {detection_problem(kind)}, so it cannot make anomaly maps: train a "
                      f"pixelcnn or transformer prior on the run (python -m keras_vqvae.train --run-dir {run_dir} "
                      f"--stage prior --prior pixelcnn) and use that")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian (2r + 1,) with r = ceil(3 sigma); (1,) = [1] for sigma 0."""
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else np.ones(1, np.float32)
    return (kernel / kernel.sum()).astype(np.float32)


def smooth(maps, sigma: float):
    """maps (batch, H, W, 1) convolved with a Gaussian of `sigma` pixels, zero outside ('SAME')."""
    kernel = tf.constant(gaussian_kernel(sigma))
    maps = tf.nn.conv2d(maps, tf.reshape(kernel, (-1, 1, 1, 1)), 1, "SAME")  # along the height
    return tf.nn.conv2d(maps, tf.reshape(kernel, (1, -1, 1, 1)), 1, "SAME")  # along the width


def eroded_brain(images):
    """(batch, S, S, 1) float mask of the brain of images in [0, 1]: the non-background pixels, eroded."""
    foreground = tf.cast(images > BRAIN_THRESHOLD, tf.float32)
    return -tf.nn.max_pool2d(-foreground, BRAIN_EROSION, strides=1, padding="SAME")


def signed_residual(images, reconstructions, sign: str):
    """The residual of images against reconstructions of the same shape, the departures `sign` (of SIGNS) keeps:
    |x - x^| ('both'), max(x - x^, 0) ('bright') or max(x^ - x, 0) ('dark')."""
    difference = images - reconstructions
    if sign == "bright":
        return tf.nn.relu(difference)
    return tf.nn.relu(-difference) if sign == "dark" else tf.abs(difference)


def top_mean(maps, brain):
    """The mean of the highest TOP_FRACTION of each map's values inside its brain (at least one pixel), (batch,):
    maps and brain (batch, S, S, 1), maps zero outside the brain."""
    batch = tf.shape(maps)[0]
    values = tf.sort(tf.reshape(maps, (batch, -1)), axis=-1, direction="DESCENDING")  # (batch, S * S)
    count = tf.maximum(1, tf.cast(tf.math.ceil(TOP_FRACTION * tf.reduce_sum(brain, axis=[1, 2, 3])), tf.int32))
    totals = tf.gather(tf.cumsum(values, axis=-1), count - 1, batch_dims=1)  # (batch,)
    return totals / tf.cast(count, tf.float32)


def healing_seeds(seed, first_index, count, draws: int):
    """Stateless seeds (count * draws, 2) of the healing draws, slice by slice: draw d of the slice numbered
    first_index + b takes fold_in(sample seed of that slice, d), so a slice's draws do not depend on the batch."""
    slice_seeds = sample_seeds(seed, first_index, count)  # (count, 2)
    per_draw = [tf.map_fn(lambda s, d=d: tf.random.experimental.stateless_fold_in(s, d), slice_seeds)
                for d in range(draws)]  # draws x (count, 2)
    return tf.reshape(tf.stack(per_draw, axis=1), (-1, 2))  # (count * draws, 2), slice-major


class AnomalyDetector:
    """The anomaly maps of one VQ-VAE and one prior at one threshold (see the module docstring for the maths).

    Args:
        vqvae: the trained VQ-VAE.
        prior: a prior over its code maps that can score codes and redraw them (see `detection_problem`).
        threshold: per-code NLL in bits above which a code is redrawn; None takes `settings.threshold`. Give it in
            one of the two places (`keras_vqvae.calibration.calibrate_threshold` gives one from healthy slices).
        settings: draws, their temperature, smoothing, seed, and the threshold when `threshold` is None.
    """

    def __init__(self, vqvae: VQVAE, prior: keras.Model, threshold: float | None = None,
                 settings: AnomalySettings = AnomalySettings()):
        if detection_problem(kind_of(prior)):
            raise no_detection_error(kind_of(prior))
        self.vqvae, self.prior, self.settings = vqvae, prior, settings
        self.threshold = _one_threshold(threshold, settings.threshold)
        self.sampler = make_sampler(None, prior)
        self.downsampling = vqvae.encoder.downsampling

    def detect(self, images, seed, first_index, positions=None) -> dict:
        """The anomaly maps and what they are made of, for images (batch, S, S, 1) float32 in [0, 1]: slice b is the
        slice numbered first_index + b (its draws' seeds depend on that number, see `healing_seeds`); positions
        (batch,) int32 its slice position, ANY_POSITION or None for any. A graph function's body.

        Returns a dict: 'maps' (batch, S, S) the anomaly maps; 'scores' (batch,); 'nll' (batch, h, w) bits;
        'redrawn' (batch, h, w) bool; 'healed_codes' (batch, D, h, w); 'healed' (batch, D, S, S, 1) in [0, 1];
        'reconstructions' (batch, S, S, 1) in [0, 1]; 'residual_maps' (batch, S, S) the plain reconstruction
        residual, masked and smoothed alike, and 'residual_scores' (batch,) summarised alike: the baseline."""
        draws, sigma = self.settings.draws, self.settings.smoothing
        batch = tf.shape(images)[0]
        model_images = images - 0.5  # the models' range [-0.5, 0.5]
        labels = prior_labels(self.prior, positions, batch)
        codes = self.vqvae.encode(model_images)  # (batch, h, w)                                     step 1
        nll = self.prior.code_nll(codes, labels)  # (batch, h, w) bits                              step 2
        keep = nll <= self.threshold  # (batch, h, w)
        healed_codes, ever_redrawn = self._healed(codes, keep, labels, healing_seeds(  # step 3
            seed, first_index, batch, draws))  # (batch * D, h, w) and (batch, h, w)
        healed = self.vqvae.decode(healed_codes) + 0.5  # (batch * D, S, S, 1)                        step 4
        healed = tf.reshape(healed, tf.concat([[batch, draws], tf.shape(images)[1:]], 0))  # (batch, D, S, S, 1)
        reconstructions = self.vqvae.decode(codes) + 0.5  # (batch, S, S, 1)
        brain = eroded_brain(images)  # (batch, S, S, 1)
        redrawn = tf.cast(ever_redrawn, tf.float32)[..., None]  # (batch, h, w, 1)
        redrawn_area = self._upsampled(tf.nn.max_pool2d(redrawn, REDRAWN_GROWTH, 1, "SAME"))  # (batch, S, S, 1)
        residual = tf.reduce_mean(signed_residual(images[:, None], healed, self.settings.sign), axis=1)  # (b, S, S, 1)
        maps = smooth(residual * brain * redrawn_area, sigma)
        residual_maps = smooth(signed_residual(images, reconstructions, self.settings.sign) * brain, sigma)
        return {"maps": maps[..., 0], "scores": top_mean(maps, brain), "nll": nll,  # step 5
                "redrawn": tf.logical_not(keep), "healed": healed,
                "healed_codes": tf.reshape(healed_codes, tf.concat([[batch, draws], tf.shape(codes)[1:]], 0)),
                "reconstructions": reconstructions,
                "residual_maps": residual_maps[..., 0], "residual_scores": top_mean(residual_maps, brain)}

    def examine(self, images: np.ndarray, positions: np.ndarray | None = None, batch_size: int = 16,
                verbose: int = 0) -> AnomalyMaps:
        """`detect` of slices `images` (n, S, S, 1) in [0, 1] at the VQ-VAE's size, batch by batch through one traced
        graph (`keras_vqvae.batching.compiled`: a detector kept for more slices is not traced again).

        Args:
            positions: (n,) the slices' positions for a prior conditioned on them (ANY_POSITION where unknown);
                None: any position.
            batch_size: slices per step (a matter of speed and memory only): slice i draws with the seeds of slice
                number i, whatever the batch.
            verbose: progress as keras.utils.Progbar's: 0 none, 1 a bar, 2 a line at the end.
        """
        images = np.asarray(images, np.float32)
        check_positions(self.prior, positions)
        detect = compiled(self.detect)
        progress = keras.utils.Progbar(len(images), verbose=verbose, unit_name="slice")
        parts = []
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            batch_positions = None if positions is None else tf.constant(np.asarray(positions)[start:stop], tf.int32)
            parts.append({name: keras.ops.convert_to_numpy(value) for name, value in detect(
                tf.constant(images[start:stop]), tf.constant(self.settings.seed), tf.constant(start),
                batch_positions).items()})
            progress.add(stop - start)
        return AnomalyMaps(**{name: np.concatenate([part[name] for part in parts]) for name in parts[0]},
                           threshold=self.threshold)

    def _healed(self, codes, keep, labels, seeds):
        """The healed code maps (batch * D, h, w), slice-major, of codes (batch, h, w) whose codes `keep` are kept,
        and the codes (batch, h, w) bool redrawn in any draw and round. Round r > 1 scores each healed map again and
        redraws its codes above the threshold, with seeds folded with r: a code kept at first may be unlikely once
        the codes before it are healed."""
        draws, temperature = self.settings.draws, tf.constant(self.settings.temperature)
        labels = None if labels is None else tf.repeat(labels, draws)
        healed = tf.repeat(codes, draws, axis=0)  # (batch * D, h, w)
        keep = tf.repeat(keep, draws, axis=0)
        ever_redrawn = tf.logical_not(keep)
        for round_number in range(self.settings.rounds):
            if round_number:
                keep = self.prior.code_nll(healed, labels) <= self.threshold
                ever_redrawn = tf.logical_or(ever_redrawn, tf.logical_not(keep))
                seeds = tf.map_fn(lambda s: tf.random.experimental.stateless_fold_in(s, round_number), seeds)
            healed = self.sampler.draw(seeds, temperature, labels, given=(healed, keep))
        per_draw = tf.reshape(ever_redrawn, tf.concat([[-1, draws], tf.shape(codes)[1:]], 0))
        return healed, tf.reduce_any(per_draw, axis=1)

    def _upsampled(self, code_maps):
        """(batch, h, w, 1) -> (batch, S, S, 1): each code's value over the pixels it decodes to."""
        return tf.repeat(tf.repeat(code_maps, self.downsampling, axis=1), self.downsampling, axis=2)


@dataclasses.dataclass(frozen=True)
class AnomalyMaps:
    """What `anomaly_maps` returns, as numpy arrays (see `AnomalyDetector.detect`), for n slices of S x S pixels,
    h x w codes and D healing draws.

    Attributes:
        maps: (n, S, S) the anomaly maps.
        scores: (n,) each slice's score, the mean of its map's highest TOP_FRACTION inside the brain.
        nll: (n, h, w) each code's NLL under the prior, in bits.
        redrawn: (n, h, w) bool, the codes above the threshold.
        healed_codes: (n, D, h, w) the healed code maps.
        healed: (n, D, S, S, 1) in [0, 1], their decoded slices.
        reconstructions: (n, S, S, 1) in [0, 1], the plain reconstructions.
        residual_maps: (n, S, S) the plain reconstruction residual, masked and smoothed as the maps.
        residual_scores: (n,) its scores.
        threshold: the threshold in bits.
    """

    maps: np.ndarray
    scores: np.ndarray
    nll: np.ndarray
    redrawn: np.ndarray
    healed_codes: np.ndarray
    healed: np.ndarray
    reconstructions: np.ndarray
    residual_maps: np.ndarray
    residual_scores: np.ndarray
    threshold: float


def anomaly_maps(vqvae: VQVAE, prior: keras.Model, images: np.ndarray, threshold: float | None = None,
                 positions: np.ndarray | None = None, settings: AnomalySettings = AnomalySettings(),
                 batch_size: int = 16, verbose: int = 0) -> AnomalyMaps:
    """Anomaly maps of slices, the prior's unlikely codes redrawn as healthy (see the module docstring).

    `AnomalyDetector(vqvae, prior, threshold, settings).examine(images, positions, batch_size, verbose)`; keep such a
    detector to examine more slices without tracing its graph again.

    Args:
        vqvae: the trained VQ-VAE.
        prior: a prior over its code maps that scores codes and redraws them (a `GatedPixelCNN` or a
            `CodeTransformer`).
        images: slices (n, S, S, 1) float32 in [0, 1] at the VQ-VAE's size.
        threshold: per-code NLL in bits above which a code is redrawn, or None to take `settings.threshold`;
            `keras_vqvae.calibration.calibrate_threshold` gives one from healthy slices.
        positions: (n,) the slices' positions for a prior conditioned on them (ANY_POSITION where unknown); None:
            any position.
        settings: draws, smoothing, seed (and the threshold when `threshold` is None).
        batch_size: slices per step (a matter of speed and memory only).
        verbose: progress as keras.utils.Progbar's: 0 none, 1 a bar, 2 a line at the end.

    Returns:
        `AnomalyMaps` of numpy arrays: maps (n, S, S), scores (n,), nll (n, h, w) bits, redrawn (n, h, w) bool,
        healed_codes (n, D, h, w), healed (n, D, S, S, 1), reconstructions (n, S, S, 1), residual_maps (n, S, S)
        and residual_scores (n,) of the plain reconstruction residual, and the threshold used.
    """
    return AnomalyDetector(vqvae, prior, threshold, settings).examine(images, positions, batch_size, verbose)


def _one_threshold(given: float | None, in_settings: float | None) -> float:
    """The threshold given as an argument or in the settings: an InputError when both are given and differ, or
    neither is, or it is not a positive number of bits."""
    if given is not None and in_settings is not None and float(given) != float(in_settings):
        raise InputError(f"two anomaly thresholds were given, {given} and settings.threshold {in_settings}: give "
                         f"one of them")
    threshold = given if given is not None else in_settings
    if threshold is None:
        raise InputError("no anomaly threshold was given: pass threshold=, or AnomalySettings(threshold=...); "
                         "keras_vqvae.calibration.calibrate_threshold gives one from healthy slices")
    if not threshold > 0 or not math.isfinite(threshold):
        raise InputError(f"the anomaly threshold must be a positive number of bits, got {threshold}")
    return float(threshold)
