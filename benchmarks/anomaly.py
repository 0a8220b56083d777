"""How well a run's anomaly maps find synthetic lesions, against the baselines of the field, at thresholds set without
the test labels, as JSON.

    python benchmarks/anomaly.py --run-dir RUN                            # bright, dark and pasted lesions
    python benchmarks/anomaly.py --run-dir RUN --figure docs/anomaly_maps.png
    python benchmarks/anomaly.py --run-dir RUN --validation-only --temperature 0.1     # a setting, on validation
    python benchmarks/anomaly.py --run-dir RUN --sign lesion --kinds bright dark       # maps of each lesion's sign

For each kind of lesion (`keras_vqvae.data.lesions`), the run's validation and test splits of the embedded data get
lesions on half their slices (seeded by the run's seed) and are examined as `python -m keras_vqvae.detect` examines
them: the maps at the model's size, brought back to 256 x 256, measured against the masks over all pixels of a split
(`keras_vqvae.metrics.detection`). The maps:

* `healed`: the package's anomaly maps, the residual of the prior-healed slices near redrawn codes;
* `reconstruction`: the plain residual |x - reconstruction|, masked and smoothed alike;
* `intensity_bright`, `intensity_dark`: the slice itself, or one minus it, masked and smoothed alike: the baseline
  that needs no training (Meissen et al. 2021, `keras_vqvae.anomaly_baselines`); bright lesions get the first, dark
  ones the second, pasted tissue (whose mean intensity is the tissue's) both;
* `nll`: the prior's per-code NLL laid over each code's pixels, masked and smoothed alike: the likelihood alone;
* `healed_times_nll`: the healed map times the NLL map, a combination measured on the validation split.

The healed maps and the plain residual show departures of --sign: both (the default, as `detect`), bright, dark, or
`lesion`, each kind's own (pasted tissue: both), as a user who knows what they look for would ask `detect --sign`.

Each map gets two thresholds, neither from the test labels: `healthy`, the largest over the healthy validation
subjects of the median-filtered map value that --flagged (1%) of the subject's brain pixels exceed
(`keras_vqvae.anomaly_masks.subject_threshold`, what `detect` uses for its masks), and `validation`, the one of the
best Dice on the lesioned validation split. On the test split each map reports pixel AUPRC, the oracle best Dice (its
threshold chosen on the test labels), the Dice of the masks at each threshold (after the --median-size filter and the
removal of components under --min-pixels pixels), the share of the healthy test slices' brain pixels those masks mark
(over all of them, and for the healthy test subject marked most), slice AUROC of its score (the mean of its top 1%
inside the brain; the healed map's is the detector's) and slice AUROC of the area its masks mark at the healthy
threshold. `postprocessing` measures the healed masks on the lesioned validation split for several median filters
and smallest components, each at its own healthy threshold, and with a healthy threshold per slice position.

`healthy` examines the test split without lesions: brain SSIM of the healed slices (each draw) against that of the
plain reconstructions (healing must not redraw healthy anatomy), and the share of codes redrawn. `seconds_per_slice`
times the examination of the lesioned test slices (a first batch traced before and not timed). With
--validation-only, the lesioned validation split stands for the test split and its healthy slices for the healthy
test slices (the `validation` threshold is then an oracle too): for comparing settings at half the cost, never for
reporting. Nothing is trained;
the code threshold is the run's calibration at --percentile. Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import hardware
from keras_vqvae import cli, plots
from keras_vqvae.anomaly import SIGNS, AnomalyDetector, AnomalySettings, eroded_brain, top_mean
from keras_vqvae.anomaly_baselines import intensity_maps, nll_maps
from keras_vqvae.anomaly_masks import MaskSettings, anomaly_masks, filtered_maps, healthy_threshold, subject_threshold
from keras_vqvae.calibration import run_calibration
from keras_vqvae.data import SliceSet, SubjectSplit, make_dataset
from keras_vqvae.data.datasets import to_input_size
from keras_vqvae.data.lesions import LESION_KINDS, lesioned_arrays
from keras_vqvae.metrics.detection import auroc, best_dice, detection_metrics, dice
from keras_vqvae.metrics.image import brain_ssim
from keras_vqvae.training import RunFolder

FIGURE_ROWS = 3  # lesioned slices per kind in the figure
POSTPROCESSING = ((1, 1), (3, 1), (5, 1), (1, 10), (1, 30), (3, 10), (5, 30))  # (median size, smallest component)


def lesion_sign(kind: str) -> str:
    """The sign of the departures lesions of `kind` make: their contrast's, or both for pasted tissue."""
    polarities = intensity_polarities(kind)
    return polarities[0] if len(polarities) == 1 else "both"


def intensity_polarities(kind: str) -> tuple[str, ...]:
    """The intensity baselines that can see lesions of `kind`: its own polarity, or both for pasted tissue."""
    contrast = LESION_KINDS[kind].contrast
    return ("bright", "dark") if contrast is None else ("bright",) if contrast[0] > 1 else ("dark",)


def map_names(kind: str) -> list[str]:
    return ["healed", "reconstruction", *(f"intensity_{p}" for p in intensity_polarities(kind)), "nll",
            "healed_times_nll"]


@dataclasses.dataclass
class Examined:
    """Slices of one split examined: every map by name at 256 x 256 (n, 256, 256) and at the model's size (n, S, S),
    where the masks are made, as `detect` makes them; each map's slice scores (n,); the eroded brains (n, S, S) bool
    at the model's size; the detector's result (`keras_vqvae.anomaly.AnomalyMaps`), the images (n, S, S, 1) it
    examined, their positions (n,) and subjects (n,)."""

    maps: dict[str, np.ndarray]
    model_maps: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    brain: np.ndarray
    result: object
    images: np.ndarray
    positions: np.ndarray
    subjects: np.ndarray
    seconds_per_slice: float


def model_images(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 slices (N, 256, 256) as the pipeline feeds them to the model: (N, S, S, 1) float32 in [0, 1]."""
    slices = SliceSet("lesioned", tuple("0" * len(pixels)), tuple(range(len(pixels))), pixels=pixels)
    return np.concatenate([batch.numpy() for batch in make_dataset(slices, image_size, 64)]) + 0.5


def examine(detector: AnomalyDetector, pixels: np.ndarray, names: list[str], image_size: int,
            batch_size: int) -> Examined:
    """Every map of the slices pixels uint8 (N, 256, 256) named in the OASIS layout, timed once traced (a first
    batch is traced, not timed)."""
    subjects = np.array([name.split("_slice_")[0] for name in names])
    positions = np.array([int(name.split("_slice_")[1].split(".")[0]) for name in names])
    images = model_images(pixels, image_size)
    detector.examine(images[:batch_size], positions[:batch_size], batch_size)
    started = time.perf_counter()
    result = detector.examine(images, positions, batch_size)
    seconds = (time.perf_counter() - started) / len(images)
    sigma, brain = detector.settings.smoothing, eroded_brain(images)
    model_size = {"healed": result.maps, "reconstruction": result.residual_maps,
                  **{f"intensity_{p}": intensity_maps(images, p, sigma) for p in ("bright", "dark")},
                  "nll": nll_maps(result.nll, images, sigma)}
    model_size["healed_times_nll"] = model_size["healed"] * model_size["nll"]
    scores = {"healed": result.scores, "reconstruction": result.residual_scores,
              **{name: top_mean(maps[..., None], brain).numpy() for name, maps in model_size.items()
                 if name not in ("healed", "reconstruction")}}
    full_size = {name: to_input_size(maps, *pixels.shape[1:]) for name, maps in model_size.items()}
    return Examined(full_size, model_size, scores, brain.numpy()[..., 0] > 0, result, images, positions, subjects,
                    seconds)


def thresholded(model_maps: np.ndarray, threshold: float, masks: MaskSettings, size: int | None = 256,
                inclusive: bool = False) -> np.ndarray:
    """The masks of maps at the model's size (n, S, S) at a threshold, post-processed as `masks` says, as `detect`
    makes them: at `size` x `size` (bilinear, then > 0.5) or at the model's size (None). Inclusive: a value equal to
    the threshold is marked, as at a best-Dice threshold."""
    if inclusive:
        threshold = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    made = anomaly_masks(model_maps, threshold, masks.median_size, masks.min_pixels)
    return made if size is None else to_input_size(made.astype(np.float32), size, size) > 0.5


def healthy_thresholds(healthy_validation: Examined, settings: MaskSettings) -> dict[str, float]:
    """Each map's threshold that marks at most a share settings.flagged of any healthy validation subject's brain, as
    `detect` sets it (on the median-filtered maps at the model's size)."""
    return {name: subject_threshold(filtered_maps(maps, settings.median_size), healthy_validation.brain,
                                    healthy_validation.subjects, settings.flagged)
            for name, maps in healthy_validation.model_maps.items()}


def measured(name: str, test: Examined, truth: np.ndarray, validation: Examined, validation_truth: np.ndarray,
             healthy_cut: float, healthy_test: Examined, settings: MaskSettings) -> dict:
    """One map's test figures at the oracle, healthy (`healthy_cut`) and validation thresholds (see the module
    docstring). The validation threshold is chosen on the maps that the masks threshold: median-filtered at the
    model's size, brought to the masks' size."""
    with_lesion = truth.any(axis=(1, 2))
    metrics = detection_metrics(test.maps[name], truth, test.scores[name], with_lesion)
    filtered = to_input_size(filtered_maps(validation.model_maps[name], settings.median_size),
                             *validation_truth.shape[1:])
    thresholds = {"healthy": healthy_cut, "validation": best_dice(filtered, validation_truth)[1]}
    for which, threshold in thresholds.items():
        inclusive = which == "validation"
        masks = thresholded(test.model_maps[name], threshold, settings, truth.shape[-1], inclusive)
        metrics[f"dice_at_{which}_threshold"] = dice(masks, truth)
        marked = thresholded(healthy_test.model_maps[name], threshold, settings, None, inclusive)
        metrics[f"healthy_flagged_at_{which}_threshold"] = float(marked[healthy_test.brain].mean())
        metrics[f"healthy_flagged_most_of_a_subject_at_{which}_threshold"] = max(
            float(marked[healthy_test.subjects == subject][healthy_test.brain[healthy_test.subjects == subject]].mean())
            for subject in np.unique(healthy_test.subjects))
        metrics[f"{which}_threshold"] = threshold
        if which == "healthy":
            metrics["slice_auroc_of_mask_area"] = auroc(masks.sum(axis=(1, 2)), with_lesion)
    return rounded(metrics)


def postprocessing(validation: Examined, truth: np.ndarray, healthy_validation: Examined, flagged: float) -> list:
    """The healed masks' Dice on the lesioned validation split, and the share of healthy validation brain pixels they
    mark, for each median filter and smallest component of POSTPROCESSING, at its own healthy threshold."""
    rows, healthy = [], healthy_validation.model_maps["healed"]
    for median_size, min_pixels in POSTPROCESSING:
        settings = MaskSettings(flagged=flagged, median_size=median_size, min_pixels=min_pixels)
        threshold = subject_threshold(filtered_maps(healthy, median_size), healthy_validation.brain,
                                      healthy_validation.subjects, flagged)
        masks = thresholded(validation.model_maps["healed"], threshold, settings, truth.shape[-1])
        marked = thresholded(healthy, threshold, settings, None)
        rows.append({"median_size": median_size, "min_pixels": min_pixels, "dice": round(dice(masks, truth), 4),
                     "healthy_flagged": round(float(marked[healthy_validation.brain].mean()), 5)})
    per_position = {position: healthy_threshold(healthy[at], healthy_validation.brain[at], flagged)
                    for position in np.unique(healthy_validation.positions)
                    for at in [healthy_validation.positions == position]}
    cut = np.array([per_position[position] for position in validation.positions])[:, None, None]
    masks = to_input_size((validation.model_maps["healed"] > cut).astype(np.float32), *truth.shape[1:]) > 0.5
    rows.append({"threshold_per_position": True, "dice": round(dice(masks, truth), 4)})
    return rows


def rounded(metrics: dict) -> dict:
    return {key: round(value, 5) for key, value in metrics.items()}


def plot_panels(columns: dict[str, np.ndarray], row_labels: list[str], path: Path, title: str = "") -> None:
    """Rows of slices side by side: `columns` maps a column's title to its images (rows, H, W). Columns whose
    title ends in 'slice' or 'mask' are shown in grey on [0, 1]; the others (anomaly maps) in colour on one scale per
    column, with a colour bar under it."""
    rows, count = len(row_labels), len(columns)
    title = plots.wrapped_title(title, 2.0 * count)
    figure = Figure(figsize=(2.0 * count, 2.0 * rows + 0.9 + plots.space_for_title(title)), layout="constrained")
    axes = figure.subplots(rows, count, squeeze=False)
    for column, (name, images) in enumerate(columns.items()):
        grey = name.endswith(("slice", "mask"))
        vmax = 1.0 if grey else max(float(np.percentile(images, 99.9)), 1e-6)
        for row in range(rows):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            shown = axis.imshow(images[row], cmap="gray" if grey else "inferno", vmin=0, vmax=vmax,
                                interpolation="nearest")
            if column == 0:
                axis.set_ylabel(row_labels[row], fontsize=7)
        axes[0, column].set_title(name, fontsize=8)
        if not grey:
            figure.colorbar(shown, ax=axes[:, column].tolist(), location="bottom", shrink=0.8, aspect=15)
    figure.suptitle(title, fontsize=plots.TITLE_SIZE)
    figure.savefig(path, dpi=100)


def shown_rows(kind: str, test: Examined, pixels: np.ndarray, truth: np.ndarray, names: list[str], cut: float,
               masks: MaskSettings) -> list[tuple[str, tuple]]:
    """The figure's rows for a kind: FIGURE_ROWS lesioned test slices from the largest lesions down, each (label,
    (slice, true mask, intensity baseline, plain residual, healed residual, healed mask at the healthy threshold))."""
    lesion_pixels = truth.sum(axis=(1, 2))
    chosen = np.argsort(-lesion_pixels)[::max(1, int((lesion_pixels > 0).sum()) // FIGURE_ROWS)][:FIGURE_ROWS]
    intensity = f"intensity_{intensity_polarities(kind)[-1]}"
    return [(f"{kind}: {names[index].removesuffix('.nii.png')}",
             (pixels[index] / 255, truth[index].astype(float), test.maps[intensity][index],
              test.maps["reconstruction"][index], test.maps["healed"][index],
              thresholded(test.model_maps["healed"][index:index + 1], cut, masks)[0].astype(float)))
            for index in chosen]


def healthy_figures(examined: Examined, draws: int) -> dict:
    """Healing must leave healthy slices alone: the healed slices' brain SSIM against the plain reconstructions'."""
    result, images = examined.result, examined.images
    reconstructed = float(np.mean(brain_ssim(images, result.reconstructions)[0]))
    healed = [float(np.mean(brain_ssim(images, result.healed[:, draw])[0])) for draw in range(draws)]
    return {"slices": len(images), "brain_ssim_reconstructions": round(reconstructed, 4),
            "brain_ssim_healed": round(float(np.mean(healed)), 4),
            "brain_ssim_healed_worst_draw": round(min(healed), 4),
            "codes_redrawn": round(float(result.redrawn.mean()), 4)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/anomaly.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a run folder with a trained VQ-VAE and PixelCNN or "
                                                         "transformer prior, trained on the embedded data")
    parser.add_argument("--prior", default="pixelcnn", choices=["pixelcnn", "transformer"],
                        help="the run's prior (default: pixelcnn)")
    parser.add_argument("--kinds", nargs="+", default=list(LESION_KINDS), choices=list(LESION_KINDS),
                        help="kinds of lesion (default: all)")
    parser.add_argument("--percentile", type=float, default=AnomalySettings().percentile,
                        help="the calibration percentile of the code threshold (default: the package's)")
    parser.add_argument("--draws", type=int, default=AnomalySettings().draws, help="healing draws per slice")
    parser.add_argument("--temperature", type=float, default=AnomalySettings().temperature,
                        help="temperature of the healing draws (default: the package's)")
    parser.add_argument("--rounds", type=int, default=AnomalySettings().rounds,
                        help="healing rounds (default: the package's)")
    parser.add_argument("--sign", default=AnomalySettings().sign, choices=[*SIGNS, "lesion"],
                        help="the departures the healed and plain residuals show; lesion: each kind's own (pasted "
                             "tissue: both) (default: the package's)")
    parser.add_argument("--validation-only", action="store_true",
                        help="measure on the lesioned validation split alone, its healthy slices as the healthy "
                             "ones (for choosing settings: no test figures)")
    parser.add_argument("--flagged", type=float, default=MaskSettings().flagged,
                        help="the share of healthy validation brain pixels the healthy threshold marks")
    parser.add_argument("--median-size", type=int, default=MaskSettings().median_size,
                        help="median filter of the maps before the thresholds (default: the package's)")
    parser.add_argument("--min-pixels", type=int, default=MaskSettings().min_pixels,
                        help="smallest component kept in the masks (default: the package's)")
    parser.add_argument("--batch-size", type=int, default=16, help="slices examined at once (default: 16)")
    parser.add_argument("--figure", default=None, help="also draw slice, mask, intensity, plain and healed residual "
                                                       f"and healed mask of {FIGURE_ROWS} lesioned test slices per "
                                                       "kind into this PNG")
    return parser


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    run = RunFolder(arguments.run_dir)
    config, vqvae, prior = run.load(arguments.prior)
    settings = AnomalySettings(draws=arguments.draws, percentile=arguments.percentile,
                               temperature=arguments.temperature, rounds=arguments.rounds)
    masks = MaskSettings(flagged=arguments.flagged, median_size=arguments.median_size,
                         min_pixels=arguments.min_pixels)
    threshold = run_calibration(run, arguments.prior, prior, settings.percentile, verbose=0)["threshold"]
    subjects = SubjectSplit(*config.synthetic_subjects)
    detectors = {}  # by sign

    def examined(kind: str, split: str, sign: str, lesion_rate: float = 0.5) -> tuple[Examined, np.ndarray,
                                                                                       np.ndarray, list]:
        print(f"{kind if lesion_rate > 0.01 else 'no'} lesions in the {split} split ({sign})", file=sys.stderr)
        if sign not in detectors:
            detectors[sign] = AnomalyDetector(vqvae, prior, threshold, dataclasses.replace(settings, sign=sign))
        pixels, truth, names = lesioned_arrays(LESION_KINDS[kind], split, subjects, config.seed, lesion_rate)
        return examine(detectors[sign], pixels, names, config.image_size, arguments.batch_size), pixels, truth, names

    healthy = {}  # by sign: the healthy validation and test slices examined, and each map's healthy threshold

    def healthy_for(sign: str) -> tuple[Examined, Examined, dict[str, float]]:
        if sign not in healthy:
            validation = examined("bright", "validate", sign, 1e-9)[0]
            test = validation if arguments.validation_only else examined("bright", "test", sign, 1e-9)[0]
            healthy[sign] = validation, test, healthy_thresholds(validation, masks)
        return healthy[sign]

    results = {}
    figure_rows = {name: [] for name in ("slice", "true mask", "intensity", "plain residual", "healed residual",
                                         "healed mask")}
    labels = []
    for kind in arguments.kinds:
        sign = lesion_sign(kind) if arguments.sign == "lesion" else arguments.sign
        healthy_validation, healthy_test, healthy_cuts = healthy_for(sign)
        validation, pixels, validation_truth, names = examined(kind, "validate", sign)
        test, pixels, truth, names = ((validation, pixels, validation_truth, names) if arguments.validation_only
                                      else examined(kind, "test", sign))
        with_lesion = truth.any(axis=(1, 2))
        excess = np.maximum(test.result.nll - threshold, 0).sum(axis=(1, 2))
        results[kind] = {
            "sign": sign, "slices": len(pixels), "slices_with_lesions": int(with_lesion.sum()),
            "lesion_pixels_per_lesioned_slice": round(float(truth.sum() / with_lesion.sum()), 1),
            **{name: measured(name, test, truth, validation, validation_truth, healthy_cuts[name], healthy_test,
                              masks) for name in map_names(kind)},
            "slice_auroc_of_nll": {"total": round(auroc(test.result.nll.sum(axis=(1, 2)), with_lesion), 4),
                                   "excess_over_threshold": round(auroc(excess, with_lesion), 4)},
            "codes_redrawn": {"with_lesion": round(float(test.result.redrawn[with_lesion].mean()), 4),
                              "without": round(float(test.result.redrawn[~with_lesion].mean()), 4)},
            "postprocessing_on_validation": postprocessing(validation, validation_truth, healthy_validation,
                                                           masks.flagged),
            "seconds_per_slice": round(test.seconds_per_slice, 3),
        }
        for label, images in shown_rows(kind, test, pixels, truth, names,
                                        results[kind]["healed"]["healthy_threshold"], masks):
            labels.append(label)
            for column, image in zip(figure_rows, images):
                figure_rows[column].append(image)
        del validation, test

    results["healthy"] = healthy_figures(next(iter(healthy.values()))[1], settings.draws)  # healed alike, any sign
    if arguments.figure:
        plot_panels({name: np.stack(rows) for name, rows in figure_rows.items()}, labels, arguments.figure,
                    f"synthetic lesions in test slices of the embedded data: the intensity baseline, the plain "
                    f"reconstruction residual, the prior-healed residual ({arguments.prior}, threshold "
                    f"{threshold:.2f} bits, {settings.draws} draws) and its mask at the threshold set on healthy "
                    f"validation slices (at most {masks.flagged:.0%} of any one subject's brain marked; median "
                    f"{masks.median_size}, components under {masks.min_pixels} pixels removed)")
    print(json.dumps({
        "benchmark": "anomaly", "run_dir": str(run.path), "prior": arguments.prior,
        "measured_on": "validate" if arguments.validation_only else "test", "temperature": settings.temperature,
        "threshold_bits": round(threshold, 4), "percentile": settings.percentile, "draws": settings.draws,
        "rounds": settings.rounds, "sign": arguments.sign,
        "smoothing": settings.smoothing, "seed": settings.seed, **dataclasses.asdict(masks), **results,
        "hardware": hardware.describe(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
