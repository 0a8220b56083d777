"""Prior benchmark: the generation metrics of the PixelCNN prior and of the DCGAN prior in both snapping modes, on
one VQ-VAE, as JSON.

    python benchmarks/priors.py                        # the default run on the embedded data
    python benchmarks/priors.py --dcgan-epochs 60 ...  # any flag of python -m keras_vqvae.train

Trains (or resumes) the run's VQ-VAE and PixelCNN, then the DCGAN with binned snapping (the earlier projects' way),
then with nearest-codebook snapping: changing the snapping retrains the DCGAN, so the run folder ends up holding the
nearest-snapping one. Each prior's sample grid is copied to --grids (PRIOR_samples.png). The run folder defaults to
runs/benchmark-priors. Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import hardware
from keras_vqvae import cli
from keras_vqvae.training import TrainConfig
from keras_vqvae.training import train

VARIANTS = (("pixelcnn", {}), ("dcgan_binned", {"dcgan_snapping": "binned"}),
            ("dcgan_nearest", {"dcgan_snapping": "nearest"}))


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python benchmarks/priors.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", default="runs/benchmark-priors-grids",
                        help="folder for each prior's sample grid (default: runs/benchmark-priors-grids)")
    cli.add_config_arguments(parser, TrainConfig)
    parser.set_defaults(run_dir="runs/benchmark-priors")
    arguments = parser.parse_args(argv)
    config = cli.config_from_arguments(TrainConfig, arguments)
    grids = Path(arguments.grids)
    grids.mkdir(parents=True, exist_ok=True)
    priors = {}
    for index, (variant, settings) in enumerate(VARIANTS):
        prior = variant.split("_")[0]
        stage = "all" if index == 0 else "prior"  # the VQ-VAE once
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, so that stdout is the JSON alone
            results = train(dataclasses.replace(config, prior=prior, **settings), stage=stage, verbose=2)
        shutil.copy(config.run_path / "plots" / f"{prior}_samples.png", grids / f"{variant}_samples.png")
        section = results[prior]
        priors[variant] = {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in section["generation"].items()},
            "epochs": section["epochs"], "train_seconds": section["train_seconds"],
            "train_maps_per_second": section["train_maps_per_second"],
            "test": {k: round(v, 4) for k, v in section["test"].items()}}
    print(json.dumps({
        "benchmark": "priors",
        "config": {k: v for k, v in vars(config).items() if k != "run_dir"},
        "data": results["data"],
        "vqvae_test_ssim": round(results["vqvae"]["test"]["ssim"], 4),
        "priors": priors,
        "hardware": hardware.describe(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
