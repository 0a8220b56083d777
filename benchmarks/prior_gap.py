"""Where a prior's samples fall short of the VQ-VAE's reconstructions, as JSON: its per-code uncertainty, or the
drift of maps it continues from its own draws; and how much the figures move from one sampling seed to another.

    python benchmarks/prior_gap.py --run-dir RUN                  # the run's PixelCNN, sampling seeds 0 1 2
    python benchmarks/prior_gap.py --run-dir RUN --prior transformer --seeds 0 1 2 3 4

Every set is judged as the run judges its generated slices (`keras_vqvae.metrics.anatomy`: FD to the test slices,
the position network's confidence) against the same baselines, with as many slices as the validation split has:

* `teacher_forced`: the validation slices' code maps with every code drawn anew from the prior given the real codes
  before it (at temperature 1), decoded. No draw builds on another, so this shows the prior's per-code uncertainty
  without drift. It is no bound on the samples: each code is drawn without the real codes after it, which the map
  keeps, so a teacher-forced map can disagree with itself and score worse than samples.
* `samples`: the prior's own maps at temperature 1, as the run draws them (spread over the slice positions), for
  each seed; FD with as many slices varies from seed to seed, so `samples_mean` gives the mean and the spread.

The VQ-VAE and the prior are the run folder's, as trained; nothing is trained. Everything computes in float32: for a
run trained with --mixed-precision the figures differ from the run's own (for a float32 run, seed 0 gives exactly
the run's). Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tensorflow as tf

import hardware
from keras_vqvae import cli
from keras_vqvae.data import SubjectSplit, load_slices, make_dataset
from keras_vqvae.errors import InputError
from keras_vqvae.metrics.anatomy import AnatomyJudge
from keras_vqvae.metrics.generation import diversity_ms_ssim, real_sample, spread
from keras_vqvae.models.vqvae import decode_images
from keras_vqvae.priors.generation import generate
from keras_vqvae.training import RunFolder

REPORTED = ("fd", "fd_ratio_to_reconstructed", "position_confidence")


def _images(split, image_size: int) -> np.ndarray:
    """Every slice of a split as (N, S, S, 1) in [0, 1]."""
    return np.concatenate([batch.numpy() for batch in make_dataset(split, image_size, 64)]) + 0.5


def teacher_forced(prior, codes: np.ndarray, labels: np.ndarray | None, seed: int) -> np.ndarray:
    """codes (N, h, w) with every code drawn from the prior given the real codes before it, (N, h, w) int32."""
    drawn = []
    for start in range(0, len(codes), 64):
        batch_labels = None if labels is None else labels[start:start + 64]
        distribution = prior.distribution(codes[start:start + 64], batch_labels)
        drawn.append(distribution.sample(seed=tf.constant([seed, start], tf.int32)).numpy())
    return np.concatenate(drawn)


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/prior_gap.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a run folder with a trained VQ-VAE and prior")
    parser.add_argument("--prior", default="pixelcnn", choices=["pixelcnn", "transformer"],
                        help="the run's prior to judge (default: pixelcnn)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds (default: 0 1 2)")
    arguments = parser.parse_args(argv)
    run = RunFolder(arguments.run_dir)
    config, vqvae, prior = run.load(arguments.prior)
    network, _ = run.load_position_network()
    if network is None:
        raise InputError(f"{run.path} has no position network (its slices' file names carry no positions), so its "
                         f"samples cannot be judged by anatomy: give a run trained on slices with positions")
    slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    images = {split.name: _images(split, config.image_size) for split in slices.splits()}
    codes = np.asarray(vqvae.encode(images["validate"] - 0.5))  # (N, h, w)
    reconstructions = decode_images(vqvae, codes)

    judge = AnatomyJudge(network, images["test"], images["validate"], reconstructions, images["train"],
                         seed=config.seed)

    def judged(generated: np.ndarray) -> dict:
        return judge(generated, memorisation=False)[0]  # memorisation is not what this benchmark asks about

    labels = np.array(slices.validate.slice_numbers, np.int32) if prior.num_classes else None
    print("teacher-forced draws", file=sys.stderr)
    forced_codes = teacher_forced(prior, codes, labels, config.seed)
    forced = judged(decode_images(vqvae, forced_codes))
    samples = []
    for seed in arguments.seeds:
        print(f"samples, seed {seed}", file=sys.stderr)
        generated = generate(vqvae, prior, len(codes), seed=seed, batch_size=64).images
        shown = spread(len(generated), min(64, len(generated)))  # over the positions
        samples.append({"seed": seed, **{key: round(judged(generated)[key], 4) for key in REPORTED},
                        "diversity_ms_ssim": round(diversity_ms_ssim(generated[shown]), 4)})
    baselines = ("fd_real", "fd_reconstructed", "real_position_confidence", "reconstructed_position_confidence")
    print(json.dumps({
        "benchmark": "prior_gap",
        "run_dir": str(run.path), "prior": arguments.prior, "slices_per_set": len(codes),
        "baselines": {**{key: round(forced[key], 4) for key in baselines},
                      "real_diversity_ms_ssim": round(diversity_ms_ssim(real_sample(images["test"], 64, config.seed)), 4)},
        "teacher_forced": {**{key: round(forced[key], 4) for key in REPORTED},
                           "codes_changed": round(float((forced_codes != codes).mean()), 4)},
        "samples": samples,
        "samples_mean": {key: {"mean": round(float(np.mean([s[key] for s in samples])), 4),
                               "std": round(float(np.std([s[key] for s in samples])), 4)}
                         for key in (*REPORTED, "diversity_ms_ssim")},
        "hardware": hardware.describe(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
