"""Judge benchmark: what the run's slice-position network costs and how well it knows real slices, with and without
the embedded data's extra virtual subjects, as JSON.

    python benchmarks/judge.py                        # the training split alone, then with 144 extra subjects
    python benchmarks/judge.py --judge-subjects 48    # another number of extra subjects

For each judge, trained as `python -m keras_vqvae.train` trains it (`keras_vqvae.training.pipeline`): the seconds to
make its extra subjects and to train it, and on the real test slices its mean confidence in the position it predicts,
the fraction it places exactly and within one position. Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

import hardware
from keras_vqvae import cli
from keras_vqvae.data import SubjectSplit, load_slices
from keras_vqvae.metrics.anatomy import train_position_network
from keras_vqvae.training import TrainConfig
from keras_vqvae.training.scoring import judge_training_sets
from keras_vqvae.training.splits import decoded_images


def _judge(config: TrainConfig, slices, test: np.ndarray) -> dict:
    started = time.perf_counter()
    sets = judge_training_sets(config, slices)
    extra = [decoded_images(s, config.image_size) for s in sets[1:]]  # the subjects beyond the training split, made now
    making = time.perf_counter() - started
    images = np.concatenate([decoded_images(slices.train, config.image_size), *extra])
    started = time.perf_counter()
    network = train_position_network(images, np.concatenate([s.slice_numbers for s in sets]), slices.num_positions,
                                     seed=config.seed)
    training = time.perf_counter() - started
    probabilities = network.predict(test, verbose=0)
    probabilities = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted, positions = probabilities.argmax(axis=1), np.array(slices.test.slice_numbers)
    return {"subjects": sum(s.num_subjects for s in sets), "slices": len(images),
            "making_extra_subjects_seconds": round(making, 1), "training_seconds": round(training, 1),
            "real_test_confidence": round(float(probabilities.max(axis=1).mean()), 4),
            "real_test_exact": round(float((predicted == positions).mean()), 4),
            "real_test_within_one": round(float((abs(predicted - positions) <= 1).mean()), 4)}


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/judge.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge-subjects", type=int, default=TrainConfig.judge_subjects,
                        help=f"extra virtual subjects (default: {TrainConfig.judge_subjects}, the run's)")
    arguments = parser.parse_args(argv)
    config = TrainConfig(judge_subjects=arguments.judge_subjects)
    slices = load_slices(None, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    test = decoded_images(slices.test, config.image_size)
    judges = {}
    for subjects in (0, arguments.judge_subjects):
        print(f"training a position network with {subjects} extra subjects", file=sys.stderr)
        judges[f"extra_{subjects}"] = _judge(dataclasses.replace(config, judge_subjects=subjects), slices, test)
    print(json.dumps({"benchmark": "judge", "judges": judges, "hardware": hardware.describe()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
