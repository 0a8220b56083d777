"""What the custom `train_step`s share: one way to apply a loss's gradients, the step results Keras' `fit` can
reduce under every strategy, and the learning-rate schedule of the VQ-VAE and the PixelCNN."""

from __future__ import annotations

import keras
import tensorflow as tf

FINAL_LEARNING_RATE_FRACTION = 0.02


def cosine_adam(peak_learning_rate: float, epochs: int, steps_per_epoch: int) -> keras.optimizers.Adam:
    """Adam whose learning rate decays along a cosine from its peak to 2% of it over `epochs` epochs."""
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        peak_learning_rate, epochs * steps_per_epoch, alpha=FINAL_LEARNING_RATE_FRACTION))


def minimize(optimizer: keras.optimizers.Optimizer, loss, variables, tape: tf.GradientTape) -> None:
    """One update of `variables` by `optimizer` down the gradient of `loss` (recorded on `tape`, which must still
    be open, or persistent).

    Under a tf.distribute strategy the gradients are summed over replicas, so each replica's share of the global
    mean is loss / replicas; under float16 the optimizer (a LossScaleOptimizer) scales the loss and unscales the
    gradients."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tape:
        scaled_loss = optimizer.scale_loss(loss / replicas)
    gradients = tape.gradient(scaled_loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))


def step_logs(metrics) -> dict:
    """What a custom train_step or test_step returns: each metric's result by name, in the shape Keras' fit can
    reduce under every strategy. Across several workers Keras 3 averages step results along an axis 0, which
    scalars lack (tensorflow/tensorflow#72388), so there each result gets that axis and loses it in the average."""
    logs = {metric.name: metric.result() for metric in metrics}
    if _across_workers(tf.distribute.get_strategy()):
        logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def _across_workers(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (the case Keras reduces differently)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs) > 1
