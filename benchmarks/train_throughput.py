"""Training-throughput benchmark: examples/second and peak memory of the VQ-VAE's and the PixelCNN's training steps,
at 128x128 and 256x256 slices, for the default configuration, with XLA, and with mixed precision; as JSON.

    python benchmarks/train_throughput.py                 # every case, each in its own process
    python benchmarks/train_throughput.py --steps 40 --sizes 128

Each case builds the model of the default TrainConfig at that image size (the prior over that VQ-VAE's code grid,
32x32 or 64x64), warms up with `--warmup` steps (tracing and, with XLA, compiling) and then times `--steps` training
steps through `fit` on random batches: throughput does not depend on the pixel values. Mixed precision is bfloat16
on a CPU and float16 on a GPU. Peak memory is the process's peak resident set on a CPU, TensorFlow's peak
allocation on a GPU. Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import hardware

MODELS = ("vqvae", "pixelcnn")
VARIANTS = ("default", "xla", "mixed_precision")


def measure(model_name: str, size: int, variant: str, steps: int, warmup: int) -> dict:
    """One case, in this process: examples/second over `steps` timed steps, and peak memory."""
    import numpy as np
    import tensorflow as tf

    from keras_vqvae.config import TrainConfig
    from keras_vqvae.distribute import precision
    from keras_vqvae.train import build_pixelcnn, build_vqvae

    gpu = bool(tf.config.list_physical_devices("GPU"))
    policy = ("float16" if gpu else "bfloat16") if variant == "mixed_precision" else "off"
    config = TrainConfig(image_size=size)
    rng = np.random.default_rng(0)
    with precision(policy):
        if model_name == "vqvae":
            batch_size = config.batch_size
            data = rng.uniform(-0.5, 0.5, (batch_size, size, size, 1)).astype("float32")
            model = build_vqvae(config, data_variance=0.1, steps_per_epoch=warmup + steps)
        else:
            batch_size = config.pixelcnn_batch_size
            side = size // config.downsampling
            data = rng.integers(0, config.num_embeddings, (batch_size, side, side)).astype("int32")
            model = build_pixelcnn(config, (side, side), num_classes=0, steps_per_epoch=warmup + steps)
        model.jit_compile = variant == "xla"
        batches = tf.data.Dataset.from_tensors(data).repeat()
        model.fit(batches, steps_per_epoch=warmup, epochs=1, verbose=0)  # tracing, compiling
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - started
    if gpu:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kilobytes on Linux
    return {"model": model_name, "image_size": size, "variant": variant, "precision": policy,
            "batch_size": batch_size, "steps": steps,
            "examples_per_second": round(steps * batch_size / seconds, 1),
            "seconds_per_step": round(seconds / steps, 4), "peak_memory_mib": round(peak, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/train_throughput.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per case (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sizes (default: 128 256)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "VARIANT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.one:  # a single case, run by the parent in a fresh process so that peak memory is its own
        model, size, variant = arguments.one
        print(json.dumps(measure(model, int(size), variant, arguments.steps, arguments.warmup)))
        return 0
    cases = []
    for model in arguments.models:
        for size in arguments.sizes:
            for variant in arguments.variants:
                print(f"{model} at {size}x{size}, {variant}", file=sys.stderr)
                result = subprocess.run([sys.executable, __file__, "--one", model, str(size), variant,
                                         "--steps", str(arguments.steps), "--warmup", str(arguments.warmup)],
                                        capture_output=True, text=True)
                if result.returncode:
                    print(result.stderr[-2000:], file=sys.stderr)
                    cases.append({"model": model, "image_size": size, "variant": variant, "failed": True})
                else:
                    cases.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(json.dumps({"benchmark": "train_throughput", "cases": cases, "hardware": hardware.describe()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
