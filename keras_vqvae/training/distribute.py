"""Where and how training runs: a `tf.distribute` strategy and a Keras mixed-precision policy, chosen by name.

Strategies:

* 'auto': `MirroredStrategy` when several GPUs are visible, else TensorFlow's default strategy (one device).
* 'one-device': `OneDeviceStrategy` on the first GPU, or the CPU.
* 'mirrored': `MirroredStrategy` over every visible GPU (or the CPU), one replica each, in one process.
* 'multi-worker': `MultiWorkerMirroredStrategy` over the machines that the `TF_CONFIG` environment variable lists:
  start the same command on every machine, each with its own `TF_CONFIG` (its `task.index`; worker 0 is the chief).
  `fit` shards the data between workers.
* 'tpu': `TPUStrategy` on the TPU that `TPUClusterResolver` finds (a Colab or Cloud TPU VM).

Models, their optimizers and their checkpoints are built and loaded inside the strategy's scope; the custom
`train_step`s divide each replica's loss by the number of replicas, so that the summed gradients are those of the
global batch, and the quantizer all-reduces its codebook statistics.
"""

from __future__ import annotations

import contextlib
import json
import os

import keras
import tensorflow as tf

from keras_vqvae.errors import InputError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
PRECISIONS = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (see the module's docstring)."""
    # Physical devices only: listing logical ones starts TensorFlow's runtime, after which collective ops (the
    # multi-worker strategy's) can no longer be configured.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise InputError("--strategy multi-worker needs the TF_CONFIG environment variable on every worker (the "
                             "cluster's workers and this one's index): set it, or use --strategy mirrored")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise InputError(f"TF_CONFIG is not JSON ({error}): set it to the cluster description that "
                             f"tf.distribute.MultiWorkerMirroredStrategy reads")
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:  # TensorFlow already ran something in this process
            raise InputError(f"--strategy multi-worker must be set up before TensorFlow runs anything ({error}): "
                             f"start training in a fresh process") from None
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as error:
            raise InputError(f"--strategy tpu found no TPU ({error}): run on a TPU machine, or pick another strategy")
        return tf.distribute.TPUStrategy(resolver)
    raise InputError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")


@contextlib.contextmanager
def precision(name: str):
    """Keras' global dtype policy set to `name` ('off', 'float16' or 'bfloat16') inside the block, restored after.

    Under 'float16' and 'bfloat16' layers compute in that type and keep float32 variables; the quantizer keeps its
    distances, losses and outputs in float32, and `fit` wraps the optimizer in a LossScaleOptimizer for float16,
    which the custom train_steps use through `optimizer.scale_loss`."""
    if name not in PRECISIONS:
        raise InputError(f"unknown mixed precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[name])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
