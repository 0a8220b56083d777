"""Binary anomaly masks from anomaly maps, at a threshold set without lesion labels, with the field's post-processing.

A user has healthy slices but no lesion labels, so the threshold on a map is set on healthy validation slices: the
map value that a chosen share of their brain pixels exceeds (`healthy_threshold`; 1% by default, as autoDDPM sets
its threshold), taken per subject and the largest of the subjects' kept (`subject_threshold`), so that the share
holds for a healthy subject the calibration has not seen, not only for the pooled slices: a pooled 1% marked up to
2.3% of a held-out validation subject, the largest per-subject threshold at most 0.96% (docs/anomaly.md).
`calibrate_mask_threshold` sets it for a detector's maps; `train` keeps it with the run's anomaly calibration
(RUN_DIR/PRIOR_anomaly.json, under "masks"), `run_mask_calibration` reads it back, or sets it again on the run's
validation slices for other settings, and `detect` and the SavedModel's `anomaly` endpoint mark the pixels above it.

The post-processing of Baur et al. (2021), also in pDDPM's code: the brain mask eroded (the maps of
`keras_vqvae.anomaly` already are), the map median-filtered (`median_filtered`; 5 x 5 by default), and connected
components of the mask smaller than a few pixels removed (`without_small_components`; under 30 by default), both
chosen on the lesioned validation split. `mask_tensor` does all of it in one graph, for `anomaly_masks` (and so
`detect`) and the SavedModel alike.

References:
    C. Baur, S. Denner, B. Wiestler, N. Navab, S. Albarqouni, "Autoencoders for unsupervised anomaly segmentation in
    brain MR images: a comparative study", Medical Image Analysis 69, 2021.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_vqvae.anomaly import AnomalyDetector, eroded_brain
from keras_vqvae.data import SubjectSplit, load_split, make_dataset
from keras_vqvae.errors import InputError
from keras_vqvae.settings import Check, at_least, between, check_settings, odd_at_least, option

HEALTHY_FLAGGED = 0.01  # the share of healthy brain pixels above the calibrated threshold
MEDIAN_BATCH = 16  # maps median-filtered at once
CALIBRATION_SLICES = 256  # healthy validation slices at most (evenly spaced through the split) for the threshold
OTHER_MASKS_KEPT = 8  # mask calibrations of settings other than the run's kept in its anomaly calibration
_LATER_SETTINGS = {"rounds": 1, "sign": "both", "per_subject": False}  # settings gained after calibrations were first
# kept, with the values those were made with


@dataclasses.dataclass(frozen=True)
class MaskSettings:
    """How binary masks are made from anomaly maps (flags --mask-threshold, ... of `python -m keras_vqvae.detect`).

    `mask_threshold` is in the maps' units; None takes the run's calibrated one: the map value that a share `flagged`
    of the healthy validation slices' brain pixels exceeds, on maps made with the same anomaly settings."""

    mask_threshold: float | None = option(None, "anomaly-map value above which a pixel is marked in the masks "
                                                "(default: the run's, calibrated so that --flagged of its healthy "
                                                "validation brain pixels are marked)",
                                          Check(lambda value: value is None or value >= 0, "not negative"),
                                          parse=float)
    flagged: float = option(HEALTHY_FLAGGED, "the share of healthy validation brain pixels that the calibrated mask "
                                             "threshold marks", between(0.0001, 0.5))
    median_size: int = option(5, "side of the median filter the maps pass before the threshold, in pixels of the "
                                 "model's size (1: none)", odd_at_least(1))
    min_pixels: int = option(30, "mask components (4-connected) of fewer pixels, at the model's size, are removed "
                                 "(1: none)", at_least(1))

    def __post_init__(self):
        check_settings(self)


def healthy_threshold(maps: np.ndarray, brain: np.ndarray, flagged: float = HEALTHY_FLAGGED) -> float:
    """The threshold t on maps of healthy slices (n, H, W) that at most a share `flagged` of their brain pixels
    (brain (n, H, W) bool) exceeds: a pixel is flagged when its value is > t."""
    if not 0 < flagged < 1:
        raise ValueError(f"the share of healthy pixels flagged must lie in (0, 1), got {flagged}")
    values = np.asarray(maps, np.float64)[np.asarray(brain, bool)]
    if not values.size:
        raise ValueError("healthy_threshold needs at least one brain pixel")
    return float(np.quantile(values, 1.0 - flagged, method="higher"))


def subject_threshold(maps: np.ndarray, brain: np.ndarray, subjects, flagged: float = HEALTHY_FLAGGED) -> float:
    """The largest of the subjects' own `healthy_threshold`s on maps (n, H, W) of healthy slices, subjects (n,) the
    subject of each slice: a threshold that at most a share `flagged` of any one subject's brain pixels exceeds."""
    subjects = np.asarray(subjects)
    if len(subjects) != len(maps):
        raise ValueError(f"{len(subjects)} subjects were given for {len(maps)} maps")
    brain = np.asarray(brain, bool)
    thresholds = [healthy_threshold(maps[subjects == subject], brain[subjects == subject], flagged)
                  for subject in np.unique(subjects) if brain[subjects == subject].any()]
    if not thresholds:
        raise ValueError("subject_threshold needs at least one brain pixel")
    return max(thresholds)


def median_filtered(maps: np.ndarray, size: int) -> np.ndarray:
    """Each map (n, H, W) replaced by the median of its size x size window around each pixel (size odd; zero beyond
    the edge), (n, H, W) float32, MEDIAN_BATCH maps at a time (the windows take size^2 times their memory)."""
    _check_median_size(size)
    maps = np.asarray(maps, np.float32)
    filtered = [_median(maps[start:start + MEDIAN_BATCH], size).numpy() for start in range(0, len(maps), MEDIAN_BATCH)]
    return np.concatenate(filtered) if filtered else np.zeros(maps.shape, np.float32)


def without_small_components(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """masks (n, H, W) bool with every connected component (4-connected) of fewer than `min_pixels` pixels
    removed."""
    masks = tf.constant(np.asarray(masks, bool))
    return tf.logical_and(masks, _component_sizes(masks) >= min_pixels).numpy()


def filtered_maps(maps: np.ndarray, median_size: int = 1) -> np.ndarray:
    """maps (n, H, W) as the masks threshold them: median-filtered (size 1: as they are), float32."""
    return median_filtered(maps, median_size) if median_size > 1 else np.asarray(maps, np.float32)


def anomaly_masks(maps: np.ndarray, threshold: float, median_size: int = 1, min_pixels: int = 1) -> np.ndarray:
    """Binary anomaly masks: the maps median-filtered, flagged above a threshold, and small components removed.

    Args:
        maps: anomaly maps (n, H, W), e.g. `AnomalyMaps.maps`.
        threshold: the map value above which a pixel is flagged (`calibrate_mask_threshold` sets one on healthy
            slices).
        median_size: side of the median filter applied first (odd; 1: none).
        min_pixels: connected components (4-connected) of fewer pixels are removed last (1: none).

    Returns:
        The masks (n, H, W) bool, MEDIAN_BATCH maps at a time through `mask_tensor`.
    """
    maps = np.asarray(maps, np.float32)
    parts = [mask_tensor(maps[start:start + MEDIAN_BATCH], threshold, median_size, min_pixels).numpy()
             for start in range(0, len(maps), MEDIAN_BATCH)]
    return np.concatenate(parts) if parts else np.zeros(maps.shape, bool)


def mask_tensor(maps, threshold, median_size: int = 1, min_pixels: int = 1):
    """`anomaly_masks` as a graph: maps (batch, H, W) float32 tensor -> masks (batch, H, W) bool, as the
    SavedModel's `anomaly` endpoint returns them."""
    _check_median_size(median_size)
    masks = (_median(maps, median_size) if median_size > 1 else tf.cast(maps, tf.float32)) > threshold
    return tf.logical_and(masks, _component_sizes(masks) >= min_pixels) if min_pixels > 1 else masks


def _check_median_size(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the median filter's size must be odd and positive, got {size}")


def _median(maps, size: int):
    """The size x size median filter (zero beyond the edge) of maps (batch, H, W): (batch, H, W) float32."""
    windows = tf.image.extract_patches(tf.cast(maps, tf.float32)[..., None], [1, size, size, 1], [1, 1, 1, 1],
                                       [1, 1, 1, 1], "SAME")  # (batch, H, W, size^2)
    return tf.sort(windows, axis=-1)[..., size * size // 2]  # the median of an odd count: the middle one sorted


def _component_sizes(masks):
    """The size of each marked pixel's component (4-connected) in masks (batch, H, W) bool, 0 where unmarked:
    every marked pixel starts with a label of its own and takes the largest label among its marked neighbours until
    none changes, so that each component carries one label, and a component's size is its label's count."""
    marked = tf.cast(masks, tf.int32)
    labels = tf.reshape(tf.range(1, tf.size(marked) + 1), tf.shape(marked)) * marked

    def spread(labels):
        padded = tf.pad(labels, [[0, 0], [1, 1], [1, 1]])
        neighbours = [padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]]
        return tf.reduce_max(tf.stack([labels, *neighbours]), axis=0) * marked

    labels, _ = tf.while_loop(lambda now, before: tf.reduce_any(now != before),
                              lambda now, before: (spread(now), now), (spread(labels), labels))
    counts = tf.math.bincount(tf.reshape(labels, [-1]), minlength=tf.size(marked) + 1)
    return tf.gather(counts, labels) * marked


def calibrate_mask_threshold(detector: AnomalyDetector, images: np.ndarray, positions: np.ndarray | None,
                             subjects, settings: MaskSettings = MaskSettings(), batch_size: int = 16,
                             verbose: int = 0) -> dict:
    """The masks' threshold for a detector's maps, set on healthy slices: the map value (after the median filter)
    that at most a share `settings.flagged` of each subject's eroded brain pixels exceeds (`subject_threshold`).

    Args:
        detector: the `AnomalyDetector` whose maps the masks are made of.
        images: healthy slices (n, S, S, 1) float32 in [0, 1] at the VQ-VAE's size.
        positions: their slice positions (n,), as `AnomalyDetector.examine` takes them; None: any position.
        subjects: their subjects (n,), e.g. a `SliceSet`'s case_ids.
        settings: the share of healthy brain pixels to flag, and the median filter (`mask_threshold` is not read).
        batch_size: slices examined at once (a matter of speed and memory only).
        verbose: progress as keras.utils.Progbar's: 0 none, 1 a bar, 2 a line at the end.

    Returns:
        {'mask_threshold', 'healthy_flagged': the share of their brain pixels its masks mark (with components under
        'min_pixels' removed, so at most `flagged`), 'subjects', 'slices', and what the threshold was made with:
        'flagged', 'median_size', 'per_subject', 'threshold' (bits), 'draws', 'temperature', 'smoothing', 'seed',
        'rounds', 'sign'}.
    """
    maps = filtered_maps(detector.examine(images, positions, batch_size, verbose).maps, settings.median_size)
    brain = eroded_brain(np.asarray(images, np.float32)).numpy()[..., 0] > 0  # (n, S, S)
    threshold = subject_threshold(maps, brain, subjects, settings.flagged)
    marked = without_small_components(maps > threshold, settings.min_pixels)  # the masks, the maps filtered once
    return {"mask_threshold": threshold, "healthy_flagged": float(np.mean(marked[brain])),
            "min_pixels": settings.min_pixels, "subjects": len(np.unique(subjects)), "slices": len(images),
            **_made_with(detector, settings)}


def calibration_subset(count: int) -> np.ndarray:
    """The indices of the healthy slices, of `count`, that calibrate the masks' threshold: at most
    CALIBRATION_SLICES, evenly spaced through them (all subjects and levels of a split in its order)."""
    return np.unique(np.linspace(0, count - 1, min(count, CALIBRATION_SLICES)).round().astype(int))


def run_mask_calibration(run, prior_name: str, detector: AnomalyDetector, settings: MaskSettings = MaskSettings(),
                         verbose: int = 0) -> dict:
    """The masks' calibration (`calibrate_mask_threshold`) for `detector` of the prior `prior_name` of `run` (a
    `keras_vqvae.training.RunFolder`): one kept in RUN_DIR/PRIOR_anomaly.json when it was made with the same
    settings, else calibrated now on up to CALIBRATION_SLICES of the run's healthy validation slices (read from its
    data: an InputError says what to do when they cannot be) and kept there. The run's own (`train`'s, with the
    default settings; for an older run, the first made) is kept under "masks" and never replaced; those of other
    settings under "other_masks", the OTHER_MASKS_KEPT latest."""
    calibration, _ = run.read_anomaly_calibration(prior_name)
    wanted = _made_with(detector, settings)
    for kept in _kept_masks(calibration):
        if all(kept.get(name, _LATER_SETTINGS.get(name)) == value for name, value in wanted.items()):
            return kept
    config = run.read_config()
    try:
        split = load_split(config.data, "validate", config.seed, SubjectSplit(*config.synthetic_subjects))
    except InputError as error:
        raise InputError(f"the masks' threshold is set on the run's healthy validation slices, which cannot be read "
                         f"({error}): restore the run's data (detect also takes --mask-threshold)") from None
    split = split.reordered(calibration_subset(len(split)))
    if verbose:
        print(f"calibrating the masks' threshold on {len(split)} healthy validation slices (kept in "
              f"{run.anomaly_path(prior_name)})")
    images = np.concatenate([batch.numpy() for batch in make_dataset(split, config.image_size, 64)]) + 0.5
    positions = np.array(split.slice_numbers, np.int32) if detector.prior.num_classes else None
    masks = calibrate_mask_threshold(detector, images, positions, split.case_ids, settings, verbose=verbose)
    if calibration is not None:
        if isinstance(calibration.get("masks"), dict):  # the run's own stays; this one joins the others
            others = _kept_masks(calibration)[1:]
            calibration = {**calibration, "other_masks": [*others, masks][-OTHER_MASKS_KEPT:]}
        else:
            calibration = {**calibration, "masks": masks}
        run.write_anomaly_calibration(prior_name, calibration)
    return masks


def _kept_masks(calibration: dict | None) -> list[dict]:
    """The masks' calibrations kept in a run's anomaly calibration: the run's own first, then those of other
    settings."""
    calibration = calibration or {}
    kept = [calibration.get("masks"), *calibration.get("other_masks", [])]
    return [entry for entry in kept if isinstance(entry, dict)]


def _made_with(detector: AnomalyDetector, settings: MaskSettings) -> dict:
    """What a mask threshold depends on: the maps' settings and the masks' post-processing and share."""
    return {"flagged": settings.flagged, "median_size": settings.median_size, "per_subject": True,
            "threshold": detector.threshold,
            "draws": detector.settings.draws, "temperature": detector.settings.temperature,
            "smoothing": detector.settings.smoothing, "seed": detector.settings.seed,
            "rounds": detector.settings.rounds, "sign": detector.settings.sign}
