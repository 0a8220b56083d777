"""How well a run's anomaly maps find synthetic lesions, against the plain reconstruction residual, as JSON.

    python benchmarks/anomaly.py --run-dir RUN                            # the test split, bright and dark lesions
    python benchmarks/anomaly.py --run-dir RUN --split validate           # the split to tune settings on
    python benchmarks/anomaly.py --run-dir RUN --figure docs/anomaly_maps.png

For each kind of lesion (`keras_vqvae.data.lesions`), the run's split of the embedded data gets lesions on half its
slices (seeded by the run's seed) and is examined as `python -m keras_vqvae.detect` examines it: the maps at the
model's size, brought back to 256 x 256, measured against the masks over all pixels of the split
(`keras_vqvae.metrics.detection`). Three maps are measured:

* `healed`: the package's anomaly maps, the residual of the prior-healed slices near redrawn codes;
* `healed_everywhere`: the same residual over the whole (eroded) brain, not only near redrawn codes (what
  limiting it to redrawn codes adds);
* `reconstruction`: the plain residual |x - reconstruction|, masked and smoothed alike: a baseline;
* `intensity`: the slice itself (bright lesions) or one minus it (dark ones), masked and smoothed alike: the
  baseline that needs no training (Meissen et al. 2021, `keras_vqvae.anomaly_baselines`);
* `nll`: the prior's per-code NLL laid over each code's pixels, masked and smoothed alike: the likelihood alone.

Slice AUROC is given for each map's score (the mean of its top 1% inside the brain; the healed maps' for both healed
maps) and for two summaries of the per-code NLL: the slice's total, and its excess over the threshold (sum of
max(nll - threshold, 0)).

`healthy` examines the same split without lesions: brain SSIM of the healed slices (each draw) against that of the
plain reconstructions (healing must not redraw healthy anatomy), and the share of codes redrawn. `seconds_per_slice`
times the examination of the lesioned slices after a first batch has been traced. Nothing is trained; the threshold
is the run's calibration at --percentile (calibrated on the healthy validation slices when the run has none).
Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import hardware
from keras_vqvae import cli, plots
from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, eroded_brain, smooth, top_mean
from keras_vqvae.anomaly_baselines import intensity_maps, nll_maps
from keras_vqvae.calibration import run_calibration
from keras_vqvae.data import SliceSet, SubjectSplit, make_dataset
from keras_vqvae.data.datasets import to_input_size
from keras_vqvae.data.lesions import LESION_KINDS, lesioned_arrays
from keras_vqvae.metrics.detection import auroc, detection_metrics
from keras_vqvae.metrics.image import brain_ssim
from keras_vqvae.training import RunFolder

FIGURE_ROWS = 3  # lesioned slices per kind in the figure


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


def model_images(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 slices (N, 256, 256) as the pipeline feeds them to the model: (N, S, S, 1) float32 in [0, 1]."""
    slices = SliceSet("lesioned", tuple("0" * len(pixels)), tuple(range(len(pixels))), pixels=pixels)
    return np.concatenate([batch.numpy() for batch in make_dataset(slices, image_size, 64)]) + 0.5


def rounded(metrics: dict) -> dict:
    return {key: round(value, 4) for key, value in metrics.items()}


def examine(detector, images, positions, batch_size):
    """The detector's maps, with its seconds per slice once traced (a first batch is traced and not timed)."""
    detector.examine(images[:batch_size], positions[:batch_size], batch_size)
    started = time.perf_counter()
    result = detector.examine(images, positions, batch_size)
    return result, (time.perf_counter() - started) / len(images)


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/anomaly.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a run folder with a trained VQ-VAE and PixelCNN or "
                                                         "transformer prior, trained on the embedded data")
    parser.add_argument("--prior", default="pixelcnn", choices=["pixelcnn", "transformer"],
                        help="the run's prior (default: pixelcnn)")
    parser.add_argument("--split", default="test", choices=["validate", "test"],
                        help="the split to insert lesions into (default: test)")
    parser.add_argument("--kinds", nargs="+", default=list(LESION_KINDS), choices=list(LESION_KINDS),
                        help="kinds of lesion (default: all)")
    parser.add_argument("--percentile", type=float, default=AnomalySettings().percentile,
                        help="the calibration percentile of the threshold (default: the package's)")
    parser.add_argument("--draws", type=int, default=AnomalySettings().draws, help="healing draws per slice")
    parser.add_argument("--batch-size", type=int, default=16, help="slices examined at once (default: 16)")
    parser.add_argument("--figure", default=None, help="also draw slice, mask, plain and healed residual of "
                                                       f"{FIGURE_ROWS} lesioned slices per kind into this PNG")
    arguments = parser.parse_args(argv)
    run = RunFolder(arguments.run_dir)
    config, vqvae, prior = run.load(arguments.prior)
    settings = AnomalySettings(draws=arguments.draws, percentile=arguments.percentile)
    threshold = run_calibration(run, arguments.prior, prior, settings.percentile, verbose=0)["threshold"]
    subjects = SubjectSplit(*config.synthetic_subjects)
    detector = AnomalyDetector(vqvae, prior, threshold, settings)

    results, figure_rows = {}, {"slice": [], "true mask": [], "plain residual": [], "healed residual": []}
    labels = []
    healthy = None
    for kind in arguments.kinds:
        print(f"{kind} lesions in the {arguments.split} split", file=sys.stderr)
        pixels, masks, names = lesioned_arrays(LESION_KINDS[kind], arguments.split, subjects, config.seed)
        if healthy is None:
            healthy = lesioned_arrays(LESION_KINDS[kind], arguments.split, subjects, config.seed, lesion_rate=1e-9)[0]
        positions = np.array([int(name.split("_slice_")[1].split(".")[0]) for name in names])
        images = model_images(pixels, config.image_size)
        result, seconds = examine(detector, images, positions, arguments.batch_size)
        brain = eroded_brain(images)
        everywhere = smooth(np.abs(images[:, None] - result.healed).mean(axis=1) * brain,
                            settings.smoothing).numpy()[..., 0]
        with_lesion = masks.any(axis=(1, 2))
        polarity = "bright" if LESION_KINDS[kind].contrast[0] > 1 else "dark"
        model_size = {"healed": result.maps, "healed_everywhere": everywhere, "reconstruction": result.residual_maps,
                      "intensity": intensity_maps(images, polarity, settings.smoothing),
                      "nll": nll_maps(result.nll, images, settings.smoothing)}
        full_size = {name: to_input_size(maps, *masks.shape[1:]) for name, maps in model_size.items()}
        slice_scores = {"healed": result.scores, "healed_everywhere": result.scores,  # the healed maps' own score
                        "reconstruction": result.residual_scores,
                        **{name: top_mean(model_size[name][..., None], brain).numpy() for name in ("intensity", "nll")}}
        excess = np.maximum(result.nll - threshold, 0).sum(axis=(1, 2))
        results[kind] = {
            "slices": len(pixels), "slices_with_lesions": int(with_lesion.sum()),
            "lesion_pixels_per_lesioned_slice": round(float(masks.sum() / with_lesion.sum()), 1),
            **{name: rounded(detection_metrics(maps, masks, slice_scores[name], with_lesion))
               for name, maps in full_size.items()},
            "slice_auroc_of_nll": {"total": round(auroc(result.nll.sum(axis=(1, 2)), with_lesion), 4),
                                   "excess_over_threshold": round(auroc(excess, with_lesion), 4)},
            "codes_redrawn": {"with_lesion": round(float(result.redrawn[with_lesion].mean()), 4),
                              "without": round(float(result.redrawn[~with_lesion].mean()), 4)},
            "seconds_per_slice": round(seconds, 3),
        }
        del results[kind]["healed_everywhere"]["slice_auroc"]  # the same scores as healed's
        chosen = np.argsort(-masks.sum(axis=(1, 2)))[::max(1, with_lesion.sum() // FIGURE_ROWS)][:FIGURE_ROWS]
        for index in chosen:
            figure_rows["slice"].append(pixels[index] / 255)
            figure_rows["true mask"].append(masks[index].astype(float))
            figure_rows["plain residual"].append(full_size["reconstruction"][index])
            figure_rows["healed residual"].append(full_size["healed"][index])
            labels.append(f"{kind}: {names[index].removesuffix('.nii.png')}")

    print("the same slices without lesions", file=sys.stderr)
    positions = np.array([number for _ in subjects.case_ids()[arguments.split] for number in range(32)])
    images = model_images(healthy, config.image_size)
    result = detector.examine(images, positions, arguments.batch_size)
    reconstructed = float(np.mean(brain_ssim(images, result.reconstructions)[0]))
    healed = [float(np.mean(brain_ssim(images, result.healed[:, draw])[0])) for draw in range(settings.draws)]
    results["healthy"] = {"slices": len(images), "brain_ssim_reconstructions": round(reconstructed, 4),
                          "brain_ssim_healed": round(float(np.mean(healed)), 4),
                          "brain_ssim_healed_worst_draw": round(min(healed), 4),
                          "codes_redrawn": round(float(result.redrawn.mean()), 4)}
    if arguments.figure:
        plot_panels({name: np.stack(rows) for name, rows in figure_rows.items()}, labels,
                                  arguments.figure, f"synthetic lesions in {arguments.split} slices of the embedded "
                                  f"data: the plain reconstruction residual and the prior-healed residual "
                                  f"({arguments.prior}, threshold {threshold:.2f} bits, {settings.draws} draws)")
    print(json.dumps({
        "benchmark": "anomaly", "run_dir": str(run.path), "prior": arguments.prior, "split": arguments.split,
        "threshold_bits": round(threshold, 4), "percentile": settings.percentile, "draws": settings.draws,
        "smoothing": settings.smoothing, "seed": settings.seed, **results, "hardware": hardware.describe(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
