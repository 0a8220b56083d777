"""Prior benchmark: the generation metrics of every prior on one VQ-VAE, against the bars a realistic prior must
pass, as JSON.

    python benchmarks/priors.py                                  # every variant, the default run's settings
    python benchmarks/priors.py --variants pixelcnn transformer  # some of them
    python benchmarks/priors.py --transformer-epochs 20 ...      # any flag of python -m keras_vqvae.train

Trains (or resumes) the run's VQ-VAE, then each variant's prior on its codes: the PixelCNN, the transformer, the
DCGAN with binned snapping (the earlier projects' way), then with nearest-codebook snapping (changing the snapping
retrains the DCGAN, so the run folder ends up holding the nearest-snapping one). Each prior's pictures are copied to
--grids (VARIANT_samples.png, VARIANT_by_position.png, VARIANT_positions.png). The run folder defaults to
runs/benchmark-priors. Progress goes to stderr and the JSON alone to stdout.

`bars` says, for each variant, whether it passes each bar of a realistic prior (see `BARS`): Fréchet distance to the
test slices at most 1.3 times that of the VQ-VAE's reconstructions of unseen slices, and at most 2 times that of the
unseen slices themselves (so that blurring the reconstructions cannot meet the first); the position network at least
0.9 times as confident on generated slices as on real ones; MS-SSIM diversity within 0.03 of real slices'; at most
1 point more generated slices memorised than real test slices.
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
from keras_vqvae.training import TrainConfig, train

VARIANTS = {"pixelcnn": {}, "transformer": {}, "dcgan_binned": {"snapping": "binned"},  # the prior's own settings
            "dcgan_nearest": {"snapping": "nearest"}}  # that differ from the command line's
BARS = {
    "fd_at_most_1.3x_reconstructions": lambda g: g["fd_ratio_to_reconstructed"] <= 1.3,
    "fd_at_most_2x_real": lambda g: g["fd_ratio_to_real"] <= 2.0,
    "confidence_at_least_0.9x_real": lambda g: g["position_confidence"] >= 0.9 * g["real_position_confidence"],
    "diversity_within_0.03_of_real": lambda g: abs(g["diversity_ms_ssim"] - g["real_diversity_ms_ssim"]) <= 0.03,
    "memorised_at_most_real_plus_1_point": lambda g: g["memorised_fraction"] <= g["real_memorised_fraction"] + 0.01,
}
PICTURES = ("samples", "by_position", "positions")


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python benchmarks/priors.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", default="runs/benchmark-priors-grids",
                        help="folder for each prior's pictures (default: runs/benchmark-priors-grids)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="the priors to train and measure (default: all)")
    cli.add_config_arguments(parser, TrainConfig)
    parser.set_defaults(run_dir="runs/benchmark-priors")
    arguments = parser.parse_args(argv)
    config = cli.config_from_arguments(TrainConfig, arguments)
    grids = Path(arguments.grids)
    grids.mkdir(parents=True, exist_ok=True)
    priors = {}
    for index, variant in enumerate(arguments.variants):
        prior = variant.split("_")[0]
        stage = "all" if index == 0 else "prior"  # the VQ-VAE once
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, so that stdout is the JSON alone
            settings = dataclasses.replace(getattr(config, prior), **VARIANTS[variant])
            results = train(dataclasses.replace(config, prior=prior, **{prior: settings}), stage=stage, verbose=2)
        for picture in PICTURES:
            made = config.run_path / "plots" / f"{prior}_{picture}.png"
            if made.exists():
                shutil.copy(made, grids / f"{variant}_{picture}.png")
        section = results[prior]
        generation = section["generation"]
        priors[variant] = {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in generation.items()},
            "epochs": section["epochs"], "train_seconds": section["train_seconds"],
            "train_maps_per_second": section["train_maps_per_second"],
            "test": {k: round(v, 4) for k, v in section["test"].items()},
            "bars": {name: bool(passes(generation)) for name, passes in BARS.items()} if "fd" in generation else {}}
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
