"""Reconstruction benchmark: trains (or resumes) a VQ-VAE run and prints its test figures as JSON.

    python benchmarks/reconstruction.py                       # the default run on the embedded data
    python benchmarks/reconstruction.py --image-size 256 ...  # any flag of python -m keras_vqvae.train

The run folder defaults to runs/benchmark-reconstruction; a finished run is only re-evaluated. Progress goes to stderr
and the JSON alone to stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys

import hardware
from keras_vqvae import cli
from keras_vqvae.training import TrainConfig
from keras_vqvae.training import train


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python benchmarks/reconstruction.py", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(parser, TrainConfig)
    parser.set_defaults(run_dir="runs/benchmark-reconstruction")
    config = cli.config_from_arguments(TrainConfig, parser.parse_args(argv))
    with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, so that stdout is the JSON alone
        results = train(config, stage="vqvae", verbose=2)
    vqvae = results["vqvae"]
    test = vqvae["test"]
    print(json.dumps({
        "benchmark": "reconstruction",
        "config": {k: v for k, v in vars(config).items() if k != "run_dir"},
        "data": results["data"],
        "test_ssim": round(test["ssim"], 4),
        "test_brain_ssim": round(test["brain_ssim"], 4),
        "test_psnr_db": round(test["psnr"], 2),
        "test_codebook_usage": round(test["codebook_usage"], 4),
        "test_perplexity": round(test["perplexity"], 1),
        "epochs": vqvae["epochs"],
        "seconds_with_validation": vqvae["seconds"],
        "train_seconds": vqvae["train_seconds"],
        "train_images_per_second": vqvae["train_images_per_second"],
        "hardware": hardware.describe(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
