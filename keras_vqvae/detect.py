"""`python -m keras_vqvae.detect RUN_DIR --images FOLDER --out OUT`: anomaly maps of slices, from a run's prior.

Every slice of FOLDER is encoded, each of its codes scored by the run's prior, the unlikely ones redrawn as healthy,
and the healed slices compared with it (see `keras_vqvae.anomaly`). OUT receives, per slice, overlays/NAME.png (the
slice in grey, its anomaly map in colour, with a colour bar), and for all of them maps.npz (each slice's anomaly map at
its own height and width, float32, under its file name), masks/NAME.png (binary, 0 or 255: the median-filtered
map's pixels above the masks' threshold, calibrated so that at most 1% of each healthy validation subject's brain
pixels are marked, small components removed, at the model's size and brought back to the slice's; see
`keras_vqvae.anomaly_masks`), scores.csv (file name, score) and summary.png. With --masks FOLDER (binary PNGs of the
same names: the true lesions) it also measures the maps (pixel AUPRC, best Dice, slice AUROC, beside the plain
reconstruction residual's, and the Dice of the masks written) into OUT/metrics.json and prints them as JSON on its
last line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_vqvae import cli, plots
from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, detection_problem, no_detection_error
from keras_vqvae.anomaly_masks import MaskSettings, anomaly_masks, run_mask_calibration
from keras_vqvae.calibration import check_positions, run_calibration
from keras_vqvae.data import make_dataset, read_images
from keras_vqvae.data.datasets import to_input_size
from keras_vqvae.errors import InputError, existing_folder, folder_to_write
from keras_vqvae.metrics.detection import detection_metrics, dice
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.settings import flag
from keras_vqvae.training.run_folder import RunFolder, write_atomically


DETECTING_PRIORS = [name for name, kind in PRIOR_KINDS.items() if detection_problem(kind) is None]


def chosen_prior(run: RunFolder, name: str | None) -> str:
    """The prior that makes the maps: `name` (one of DETECTING_PRIORS), or the one the run exports when it can score
    codes, else another the run holds that can; an InputError when the run holds none that can, before any model is
    loaded."""
    if name is not None:
        return name
    run.check_run()
    held = run.held_priors()
    able = [prior for prior in held if not detection_problem(PRIOR_KINDS[prior])]
    if not able:
        if not held:
            raise InputError(f"{run.path} holds no trained prior: train one with python -m keras_vqvae.train "
                             f"--run-dir {run.path} --stage prior --prior pixelcnn")
        raise no_detection_error(PRIOR_KINDS[held[0]], run.path)
    exported = run.current_prior()
    return exported if exported in able else able[0]


def read_masks(folder, files: list[str], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The lesion mask (H, W) bool of each slice: the PNG of the same name in `folder` (non-zero: lesion), of the
    slice's own size; an InputError naming the first slice without one, or with one of another size."""
    folder = existing_folder(folder, "--masks folder", "give the folder of lesion masks named like the slices")
    masks = []
    for file, (height, width) in zip(files, sizes):
        path = folder / Path(file).name
        if not path.is_file():
            missing = sum(not (folder / Path(f).name).is_file() for f in files)
            raise InputError(f"--masks {folder} has no mask for {Path(file).name} (nor for {missing - 1} other slices)"
                             f": give a mask of the same name for every slice, or leave --masks out")
        try:
            with Image.open(path) as image:
                mask = np.asarray(image.convert("L")) > 0
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"{path} is not a readable image ({error}): write the mask again") from None
        if mask.shape != (height, width):
            raise InputError(f"the mask {path} is {mask.shape[1]}x{mask.shape[0]} but its slice is {width}x{height}: "
                             f"give masks of the slices' own size")
        masks.append(mask)
    if not any(mask.any() for mask in masks):
        raise InputError(f"none of the {len(masks)} masks in --masks {folder} marks a lesion (a non-zero pixel), so "
                         f"there is nothing to measure the maps against: give the masks of slices with lesions, or "
                         f"leave --masks out")
    return masks


def write_maps(path: Path, names: list[str], maps: list[np.ndarray]) -> None:
    """maps.npz: one float32 array per file name, written whole or not at all."""
    temporary = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(temporary, **{name: m.astype(np.float32) for name, m in zip(names, maps)})
    os.replace(temporary, path)


def write_scores(path: Path, names: list[str], scores: np.ndarray) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "score"])
    writer.writerows((name, f"{score:.6g}") for name, score in zip(names, scores))
    write_atomically(path, text.getvalue())


def measured(maps: list[np.ndarray], residual_maps: list[np.ndarray], masks: list[np.ndarray], scores: np.ndarray,
             residual_scores: np.ndarray, written: list[np.ndarray]) -> dict:
    """The detection metrics of the healed maps, with the Dice of the masks `written`, and of the plain
    reconstruction residual beside them."""
    flat = [np.concatenate([m.ravel() for m in arrays]) for arrays in (maps, residual_maps, masks, written)]
    with_lesion = [m.any() for m in masks]
    return {"healed": {**detection_metrics(flat[0], flat[2], scores, with_lesion), "dice": dice(flat[3], flat[2])},
            "reconstruction": detection_metrics(flat[1], flat[2], residual_scores, with_lesion)}


def write_outputs(out: Path, names: list[str], originals: list[np.ndarray], maps: list[np.ndarray],
                  written: list[np.ndarray], scores: np.ndarray, summary_title: str, model_maps: np.ndarray,
                  model_images: np.ndarray) -> None:
    """maps.npz, scores.csv, the overlays, the binary masks and summary.png, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("overlays", "masks"):
        (out / folder).mkdir(exist_ok=True)
    write_maps(out / "maps.npz", names, maps)
    write_scores(out / "scores.csv", names, scores)
    vmax = max(float(np.percentile(np.concatenate([m.ravel() for m in maps]), 99.9)), 1e-6)
    for name, original, anomaly, mask, score in zip(names, originals, maps, written, scores):
        plots.plot_anomaly_overlay(original, anomaly, vmax, out / "overlays" / f"{Path(name).stem}.png",
                                   f"{name}: score {score:.3g}")
        path = out / "masks" / f"{Path(name).stem}.png"
        temporary = path.with_name(path.stem + ".tmp.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(temporary)
        os.replace(temporary, path)
    plots.plot_anomaly_summary(model_images[..., 0], model_maps, scores, names,
                               max(float(np.percentile(model_maps, 99.9)), 1e-6), out / "summary.png", summary_title)


def _parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by python -m keras_vqvae.train")
    parser.add_argument("--images", metavar="FOLDER", required=True, help="the folder of PNG/JPEG slices to examine")
    parser.add_argument("--out", metavar="OUT", default=None, help="output folder (default: RUN_DIR/anomaly)")
    parser.add_argument("--masks", metavar="FOLDER", default=None,
                        help="binary PNG lesion masks named like the slices: measure the maps against them")
    parser.add_argument("--prior", choices=DETECTING_PRIORS, default=None,
                        help="the run's prior that scores the codes (default: the one the run exports, when it can)")
    parser.add_argument("--batch-size", type=int, default=16, help="slices examined at once (default: 16)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cli.add_config_arguments(parser, AnomalySettings)
    cli.add_config_arguments(parser, MaskSettings)
    return parser


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    settings = cli.config_from_arguments(AnomalySettings, arguments)
    mask_settings = cli.config_from_arguments(MaskSettings, arguments)
    given = cli.given_fields(AnomalySettings, arguments) | cli.given_fields(MaskSettings, arguments)
    for fixed, calibrating in (("threshold", "percentile"), ("mask_threshold", "flagged")):
        if {fixed, calibrating} <= given:
            raise InputError(f"{flag(fixed)} {getattr(arguments, fixed)} replaces the threshold that "
                             f"{flag(calibrating)} {getattr(arguments, calibrating)} would calibrate: give one of them")
    if arguments.batch_size < 1:
        raise InputError(f"--batch-size {arguments.batch_size} is out of range: give a positive number")
    run = RunFolder(arguments.run_dir)
    out = folder_to_write(arguments.out or run.path / "anomaly", "--out")
    prior_name = chosen_prior(run, arguments.prior)
    slices, notes = read_images(arguments.images)  # every image checked before loading anything
    names = [Path(file).name for file in slices.files]
    originals = []  # (H, W) in [0, 1], for the overlays; their shapes are the maps' and the masks' sizes
    for file in slices.files:
        with Image.open(file) as image:
            originals.append(np.asarray(image.convert("L"), np.float32) / 255)
    sizes = [original.shape for original in originals]
    masks = read_masks(arguments.masks, slices.files, sizes) if arguments.masks else None
    for note in notes:
        print(f"note: {note}")
    config, vqvae, prior = run.load(prior_name)
    positions = np.array(slices.slice_numbers)  # -1 (any position) where a name carries none
    check_positions(prior, positions)
    verbose = 0 if arguments.quiet else 1
    threshold = settings.threshold
    if threshold is None:
        threshold = run_calibration(run, prior_name, prior, settings.percentile, verbose)["threshold"]
    detector = AnomalyDetector(vqvae, prior, threshold, settings)
    mask_threshold = mask_settings.mask_threshold
    if mask_threshold is None:
        mask_threshold = run_mask_calibration(run, prior_name, detector, mask_settings, verbose)["mask_threshold"]
    dataset = make_dataset(slices, config.image_size, arguments.batch_size)
    images = np.concatenate([batch.numpy() for batch in dataset]) + 0.5  # (n, S, S, 1) in [0, 1]
    print(f"examining {len(images)} slices of {arguments.images} with the {prior_name} prior: codes above "
          f"{threshold:.2f} bits redrawn, {settings.draws} draws each (seed {settings.seed}); pixels above "
          f"{mask_threshold:.4g} marked in the masks")
    result = detector.examine(images, positions, arguments.batch_size, verbose)
    maps = [to_input_size(result.maps[i:i + 1], *size)[0] for i, size in enumerate(sizes)]
    residual_maps = [to_input_size(result.residual_maps[i:i + 1], *size)[0] for i, size in enumerate(sizes)]
    model_masks = anomaly_masks(result.maps, mask_threshold, mask_settings.median_size, mask_settings.min_pixels)
    written = [to_input_size(model_masks[i:i + 1], *size)[0] > 0.5 for i, size in enumerate(sizes)]
    write_outputs(out, names, originals, maps, written, result.scores,
                  f"the {min(8, len(names))} highest-scoring of {len(names)} slices of {arguments.images} "
                  f"({prior_name} prior, threshold {threshold:.2f} bits)", result.maps, images)
    print(f"wrote maps.npz, scores.csv, summary.png, {len(names)} overlays and {len(names)} masks to {out}")
    if masks is not None:
        metrics = {"images": str(arguments.images), "masks": str(arguments.masks), "slices": len(names),
                   "slices_with_lesions": int(sum(m.any() for m in masks)), "prior": prior_name,
                   "threshold_bits": threshold, "mask_threshold": mask_threshold,
                   **measured(maps, residual_maps, masks, result.scores, result.residual_scores, written)}
        write_atomically(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
