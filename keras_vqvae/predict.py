"""`python -m keras_vqvae.predict RUN_DIR`: new slices from a trained run's prior, or reconstructions of your slices.

Sampling (the default) draws code maps from the run's PixelCNN prior, decodes them with its VQ-VAE and writes
sample_NNN.png (8-bit grayscale at the model's size), codes.npy and grid.png into --out. With --reconstruct FOLDER it
instead passes every slice of FOLDER through the VQ-VAE, writes the reconstructions under their own names with a
comparison figure, and reports SSIM, brain SSIM and PSNR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_vqvae import cli, plots
from keras_vqvae.config import CONFIG_FILE, TrainConfig
from keras_vqvae.data import make_dataset, read_images
from keras_vqvae.errors import InputError
from keras_vqvae.generation import generate
from keras_vqvae.priors import SAMPLERS
from keras_vqvae.train import MODEL_FILE, PRIOR_FILE


def load_run(run_dir: str | Path, need_prior: bool) -> tuple[TrainConfig, keras.Model, keras.Model | None]:
    """The configuration, VQ-VAE and (when `need_prior`) prior of a run folder made by keras_vqvae.train."""
    run = Path(run_dir)
    if not (run / CONFIG_FILE).exists():
        raise InputError(f"{run} is not a run folder made by keras_vqvae.train (it has no {CONFIG_FILE}): give the "
                         f"--run-dir of a training run")
    config = TrainConfig.load(run)
    if not (run / MODEL_FILE).exists():
        raise InputError(f"{run} holds no trained VQ-VAE ({MODEL_FILE}): finish training it with "
                         f"python -m keras_vqvae.train --run-dir {run}")
    if need_prior and not (run / PRIOR_FILE).exists():
        raise InputError(f"{run} holds no trained prior ({PRIOR_FILE}): train it with "
                         f"python -m keras_vqvae.train --run-dir {run} --stage prior")
    vqvae = keras.saving.load_model(run / MODEL_FILE)
    return config, vqvae, keras.saving.load_model(run / PRIOR_FILE) if need_prior else None


def _write_png(image: np.ndarray, path: Path) -> None:
    """(H, W, 1) in [0, 1] -> 8-bit grayscale PNG."""
    Image.fromarray(np.round(np.clip(image[..., 0], 0.0, 1.0) * 255).astype(np.uint8)).save(path)


def sample_command(arguments) -> None:
    config, vqvae, prior = load_run(arguments.run_dir, need_prior=True)
    out = Path(arguments.out or Path(arguments.run_dir) / "samples")
    out.mkdir(parents=True, exist_ok=True)
    images, codes = generate(vqvae, prior, arguments.num_samples, arguments.seed, arguments.temperature,
                             arguments.condition, arguments.sampler, arguments.batch_size,
                             verbose=0 if arguments.quiet else 1)
    for index, image in enumerate(images):
        _write_png(image, out / f"sample_{index:03d}.png")
    np.save(out / "codes.npy", codes)
    condition = "" if arguments.condition is None else f", slice position {arguments.condition}"
    title = f"{len(images)} generated slices (seed {arguments.seed}, temperature {arguments.temperature:g}{condition})"
    plots.plot_grid(images[..., 0], out / "grid.png", columns=min(8, len(images)), title=title)
    print(f"wrote {len(images)} samples, codes.npy and grid.png to {out}")


def reconstruct_command(arguments) -> None:
    config, vqvae, _ = load_run(arguments.run_dir, need_prior=False)
    slices, notes = read_images(arguments.reconstruct)
    for note in notes:
        print(f"note: {note}")
    out = Path(arguments.out or Path(arguments.run_dir) / "reconstructions")
    out.mkdir(parents=True, exist_ok=True)
    dataset = make_dataset(slices, config.image_size, arguments.batch_size)
    metrics = vqvae.evaluate(dataset, return_dict=True, verbose=0 if arguments.quiet else 1)
    originals = np.concatenate([batch.numpy() for batch in dataset]) + 0.5
    reconstructions = np.concatenate([vqvae.reconstruct(batch).numpy() for batch in dataset]) + 0.5
    for path, image in zip(slices.files, reconstructions):
        _write_png(image, out / Path(path).with_suffix(".png").name)
    figures = {name: float(metrics[name]) for name in ("ssim", "brain_ssim", "psnr")}
    (out / "metrics.json").write_text(json.dumps({"folder": str(arguments.reconstruct), "images": len(slices),
                                                  **figures}, indent=2) + "\n")
    chosen = np.linspace(0, len(originals) - 1, min(8, len(originals))).astype(int)
    title = f"SSIM {figures['ssim']:.3f}, brain SSIM {figures['brain_ssim']:.3f}, PSNR {figures['psnr']:.1f} dB"
    plots.plot_reconstructions(originals[chosen], reconstructions[chosen], out / "comparison.png", title)
    print(f"reconstructed {len(slices)} slices of {arguments.reconstruct} at {config.image_size}x{config.image_size}: "
          f"ssim {figures['ssim']:.4f}, brain_ssim {figures['brain_ssim']:.4f}, psnr {figures['psnr']:.2f} dB; "
          f"wrote them, comparison.png and metrics.json to {out}")


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by python -m keras_vqvae.train")
    parser.add_argument("--num-samples", type=int, default=16, help="how many slices to generate (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed, batch size and temperature "
                                                            "give the same slices (default: 0)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature: below 1 favours likely codes, above 1 flattens them (default: 1)")
    parser.add_argument("--sampler", choices=list(SAMPLERS), default="cached",
                        help="how codes are drawn; all draw the same codes, 'cached' by far the fastest "
                             "(default: cached)")
    parser.add_argument("--condition", type=int, default=None,
                        help="slice position to generate, for a prior trained with --condition slice "
                             "(default: spread over positions, or none)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices drawn or reconstructed at once (default: 8)")
    parser.add_argument("--reconstruct", metavar="FOLDER", default=None,
                        help="instead of sampling, reconstruct every PNG/JPEG slice in FOLDER and report its SSIM")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/samples, or "
                                                    "RUN_DIR/reconstructions with --reconstruct)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    arguments = parser.parse_args(argv)
    if arguments.batch_size < 1:
        raise InputError(f"--batch-size {arguments.batch_size} is out of range: give a positive number")
    (reconstruct_command if arguments.reconstruct else sample_command)(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
