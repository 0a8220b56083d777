"""Sampling benchmark: seconds per batch of 8 code maps for each sampler, at 32x32 and 64x64 codes, as JSON.

    python benchmarks/sampling.py                    # the default prior configuration of keras_vqvae.train
    python benchmarks/sampling.py --grids 32 --batch-size 4

The prior is the default configuration (filters, layers, kernel size, codebook size of TrainConfig) with freshly
initialised weights: a sampler's cost does not depend on the weights' values. The cached sampler is timed over whole
batches. The reference and compiled samplers evaluate the whole network once per position, so every position costs
them the same: they are timed over a stretch of positions (whole rows for the compiled sampler, which draws a row per
call) after one untimed warm-up stretch, and the time is extrapolated to the whole map; the JSON says over how many
positions. Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import tensorflow as tf

import hardware
from keras_vqvae.training import TrainConfig
from keras_vqvae.priors import CachedSampler, CompiledSampler, GatedPixelCNN, ReferenceSampler
from keras_vqvae.priors.sampler import sample_seeds


class _StretchDone(Exception):
    pass


def seconds_per_position(sampler, batch_size: int, positions: int) -> tuple[float, int]:
    """Mean seconds per position over `positions` positions after a warm-up stretch, and how many were timed.

    Runs the sampler's own batch loop and stops it once enough positions are drawn: the sampler reports progress
    after each position (reference) or row (compiled).
    """
    marks = []

    def advance(positions_drawn):
        marks.append((time.perf_counter(), positions_drawn))
        if sum(count for _, count in marks[1:]) >= positions:
            raise _StretchDone

    try:
        sampler._draw(sample_seeds(0, 0, batch_size), tf.constant(1.0), None, advance)
    except _StretchDone:
        pass
    timed = sum(count for _, count in marks[1:])  # the first stretch (tracing, warm-up) is not timed
    return (marks[-1][0] - marks[0][0]) / timed, timed


def seconds_per_batch(sampler, batch_size: int, repeats: int) -> float:
    """Best of `repeats` timed batches, after one untimed batch (tracing)."""
    sampler.sample(batch_size, seed=0, batch_size=batch_size)
    times = []
    for repeat in range(repeats):
        started = time.perf_counter()
        sampler.sample(batch_size, seed=repeat + 1, batch_size=batch_size)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/sampling.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[32, 64], help="code map sides (default: 32 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="code maps per batch (default: 8)")
    parser.add_argument("--positions", type=int, default=16,
                        help="positions timed for the reference sampler (default: 16)")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches of the cached sampler (default: 2)")
    arguments = parser.parse_args(argv)
    config = TrainConfig()
    prior_config = {"num_embeddings": config.num_embeddings, "filters": config.pixelcnn.filters,
                    "layers": config.pixelcnn.layers, "kernel_size": config.pixelcnn.kernel_size}
    results = {}
    for side in arguments.grids:
        prior = GatedPixelCNN(grid_shape=(side, side), **prior_config)
        batch, positions = arguments.batch_size, side * side
        print(f"{side}x{side}: cached", file=sys.stderr)
        cached = seconds_per_batch(CachedSampler(prior), batch, arguments.repeats)
        print(f"{side}x{side}: reference", file=sys.stderr)
        reference_step, reference_timed = seconds_per_position(ReferenceSampler(prior), batch, arguments.positions)
        print(f"{side}x{side}: compiled", file=sys.stderr)
        compiled_step, compiled_timed = seconds_per_position(CompiledSampler(prior), batch, 1)
        reference, compiled = reference_step * positions, compiled_step * positions
        results[f"{side}x{side}"] = {
            "cached_seconds": round(cached, 3),
            "compiled_seconds": round(compiled, 1),
            "compiled_extrapolated_from_positions": compiled_timed,
            "reference_seconds": round(reference, 1),
            "reference_extrapolated_from_positions": reference_timed,
            "speedup_cached_vs_reference": round(reference / cached, 1),
            "speedup_cached_vs_compiled": round(compiled / cached, 1),
            "speedup_compiled_vs_reference": round(reference / compiled, 2),
        }
    print(json.dumps({"benchmark": "sampling", "prior": prior_config, "weights": "freshly initialised",
                      "batch_size": arguments.batch_size, "grids": results, "hardware": hardware.describe()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
