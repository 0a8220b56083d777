"""Training-throughput benchmark: examples/second and peak memory of the VQ-VAE's and the priors' training steps,
at 128x128 and 256x256 slices, for the default configuration, with XLA, and with mixed precision; as JSON.

    python benchmarks/train_throughput.py                 # every case, each in its own process
    python benchmarks/train_throughput.py --steps 40 --sizes 128
    python benchmarks/train_throughput.py --repeats 3 --variants default xla    # medians of three runs each
    python benchmarks/train_throughput.py --overhead      # what Python costs around the compiled steps

Each case builds the model of the default TrainConfig at that image size (a prior over that VQ-VAE's code grid,
32x32 or 64x64), warms up with `--warmup` steps (tracing and, with XLA, compiling) and then times `--steps` training
steps through `fit` on random batches: throughput does not depend on the pixel values. Mixed precision is bfloat16
on a CPU and float16 on a GPU. Peak memory is the process's peak resident set on a CPU, TensorFlow's peak
allocation on a GPU. On a shared machine one run can read twice as fast as the next: `--repeats` runs every case
that many times, in rounds, and reports the median with every run's figure. Progress goes to stderr and the JSON
alone to stdout.

`--overhead` measures instead what runs in Python around the compiled work: milliseconds per step that `fit` adds
to calling its compiled training function directly (on a tiny VQ-VAE, where the step itself costs almost nothing),
and the default VQ-VAE's `encode` on a batch of 64 slices called eagerly and through one `tf.function` (as
`keras_vqvae.batching` calls it when encoding, decoding and sampling in batches).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import hardware
from keras_vqvae.priors import PRIOR_KINDS

MODELS = ("vqvae", *PRIOR_KINDS)  # the VQ-VAE and every registered prior
VARIANTS = ("default", "xla", "mixed_precision")


def measure(model_name: str, size: int, variant: str, steps: int, warmup: int) -> dict:
    """One case, in this process: examples/second over `steps` timed steps, and peak memory."""
    import numpy as np
    import tensorflow as tf

    from keras_vqvae.priors import PRIOR_KINDS, PriorContext
    from keras_vqvae.training import TrainConfig
    from keras_vqvae.training.builders import build_prior, build_vqvae
    from keras_vqvae.training.distribute import precision

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
            kind = PRIOR_KINDS[model_name]
            batch_size = getattr(config, kind.name).batch_size
            side = size // config.downsampling
            data = rng.integers(0, config.num_embeddings, (batch_size, side, side)).astype("int32")
            context = PriorContext(vqvae=build_vqvae(config, data_variance=0.1, steps_per_epoch=1),
                                   grid_shape=(side, side), num_classes=0, steps_per_epoch=warmup + steps,
                                   validation_images=np.zeros((0, size, size, 1), "float32"), seed=0)
            model = build_prior(config, kind, context)
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


def measure_overhead(steps: int, warmup: int) -> dict:
    """Python's share around the compiled work, in this process (see the module's docstring)."""
    import numpy as np
    import tensorflow as tf

    from keras_vqvae.training import TrainConfig
    from keras_vqvae.training.builders import build_vqvae

    def seconds_per_call(function, calls):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        return (time.perf_counter() - started) / calls

    tiny = TrainConfig(image_size=32, batch_size=2, channels=8, residual_blocks=1, embedding_dim=4, num_embeddings=8)
    model = build_vqvae(tiny, data_variance=0.1, steps_per_epoch=1)
    batches = tf.data.Dataset.from_tensors(np.zeros((2, 32, 32, 1), "float32")).repeat()
    model.fit(batches, steps_per_epoch=warmup, epochs=1, verbose=0)
    fit_step = seconds_per_call(lambda: model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0), 1) / steps
    iterator, train_function = iter(batches), model.make_train_function()
    bare_step = seconds_per_call(lambda: train_function(iterator), steps)

    config = TrainConfig()
    vqvae = build_vqvae(config, data_variance=0.1, steps_per_epoch=1)
    images = np.random.default_rng(0).uniform(-0.5, 0.5, (64, config.image_size, config.image_size, 1))
    images = tf.constant(images, tf.float32)
    compiled = tf.function(vqvae.encode, reduce_retracing=True)
    vqvae.encode(images), compiled(images)  # building, tracing
    calls = max(1, steps // 10)
    eager = seconds_per_call(lambda: vqvae.encode(images).numpy(), calls)
    traced = seconds_per_call(lambda: compiled(images).numpy(), calls)
    return {"fit_ms_per_step": round(1000 * fit_step, 2), "train_function_ms_per_step": round(1000 * bare_step, 2),
            "fit_overhead_ms_per_step": round(1000 * (fit_step - bare_step), 2), "steps": steps,
            "encode_64_images_eager_seconds": round(eager, 3), "encode_64_images_tf_function_seconds": round(traced, 3),
            "encode_calls": calls}


def summary(model: str, size: int, variant: str, runs: list[dict]) -> dict:
    """One case over its repeated runs: the median throughput, every run's, and the highest peak memory."""
    if not runs:
        return {"model": model, "image_size": size, "variant": variant, "failed": True}
    rates = sorted(run["examples_per_second"] for run in runs)
    return {**runs[0], "examples_per_second": statistics.median(rates), "runs_examples_per_second": rates,
            "seconds_per_step": statistics.median(run["seconds_per_step"] for run in runs),
            "peak_memory_mib": max(run["peak_memory_mib"] for run in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/train_throughput.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per case (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sizes (default: 128 256)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of every case, in rounds; the median is reported, every run beside it (default: 1)")
    parser.add_argument("--overhead", action="store_true",
                        help="measure Python's overhead around the compiled steps instead (use --steps 300 or more)")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "VARIANT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.one:  # a single case, run by the parent in a fresh process so that peak memory is its own
        model, size, variant = arguments.one
        print(json.dumps(measure(model, int(size), variant, arguments.steps, arguments.warmup)))
        return 0
    if arguments.overhead:
        overhead = measure_overhead(arguments.steps, arguments.warmup)
        print(json.dumps({"benchmark": "train_overhead", **overhead, "hardware": hardware.describe()}, indent=2))
        return 0
    wanted = [(model, size, variant) for model in arguments.models for size in arguments.sizes
              for variant in arguments.variants]
    runs = {case: [] for case in wanted}
    for repeat in range(arguments.repeats):  # rounds over every case, so that a slow spell hits one run of each
        for model, size, variant in wanted:
            print(f"round {repeat + 1}: {model} at {size}x{size}, {variant}", file=sys.stderr)
            result = subprocess.run([sys.executable, __file__, "--one", model, str(size), variant,
                                     "--steps", str(arguments.steps), "--warmup", str(arguments.warmup)],
                                    capture_output=True, text=True)
            if result.returncode:
                print(result.stderr[-2000:], file=sys.stderr)
            else:
                runs[model, size, variant].append(json.loads(result.stdout.strip().splitlines()[-1]))
    cases = [summary(model, size, variant, runs[model, size, variant]) for model, size, variant in wanted]
    print(json.dumps({"benchmark": "train_throughput", "cases": cases, "hardware": hardware.describe()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
