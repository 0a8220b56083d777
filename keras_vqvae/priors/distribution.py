"""The prior's output distribution: a tensorflow_probability Categorical over the K codes.

TensorFlow Probability is imported here and nowhere else: under Keras 3 it needs the tf-keras package, and nothing
outside the prior's distribution should depend on that.
"""

from __future__ import annotations

import tensorflow as tf


def code_distribution(logits, temperature: float = 1.0):
    """Categorical over the last axis of `logits` (..., K), sharpened (temperature < 1) or flattened (> 1)."""
    import tensorflow_probability as tfp

    return tfp.distributions.Categorical(logits=tf.cast(logits, tf.float32) / temperature, dtype=tf.int32)


def draw_codes(logits, temperature, seed):
    """One code per row of `logits` (batch, K) from the Categorical at `temperature`: (batch,) int32.

    `seed` is a stateless seed (shape (2,) int32): the same logits and seed draw the same codes, in a Python loop,
    inside a tf.function or under XLA.
    """
    return code_distribution(logits, temperature).sample(seed=seed)
