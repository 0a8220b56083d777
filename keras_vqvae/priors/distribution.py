"""The prior's output distribution over the K codes, and drawing from it.

TensorFlow Probability is imported here and nowhere else: under Keras 3 it needs the tf-keras package, and nothing
outside the prior's distribution should depend on that.
"""

from __future__ import annotations

import tensorflow as tf


def code_distribution(logits, temperature: float = 1.0):
    """Categorical over the last axis of `logits` (..., K), sharpened (temperature < 1) or flattened (> 1)."""
    import tensorflow_probability as tfp

    return tfp.distributions.Categorical(logits=tf.cast(logits, tf.float32) / temperature, dtype=tf.int32)


def sample_uniforms(seeds, count: int):
    """Uniform numbers in [0, 1), (batch, count): row b drawn with the stateless seed seeds[b] (batch, 2), so each
    row depends on its own seed only, never on the other rows of the batch."""
    uniforms = tf.map_fn(lambda seed: tf.random.stateless_uniform([count], seed=seed), seeds,
                         fn_output_signature=tf.TensorSpec((count,), tf.float32))
    uniforms.set_shape([seeds.shape[0], count])  # map_fn may forget a batch size known when tracing
    return uniforms


def draw_codes(logits, temperature, uniforms):
    """One code per row of `logits` (batch, K) from the Categorical at `temperature`, by inverse-CDF sampling:
    the code whose interval of the cumulative distribution holds uniforms[b] (batch,) in [0, 1). (batch,) int32.

    The same logits and uniforms draw the same codes in a Python loop or inside a tf.function; a code of
    probability 0 is never drawn."""
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature)  # (batch, K)
    cumulative = tf.cumsum(probabilities, axis=-1)  # (batch, K)
    target = uniforms[:, None] * cumulative[:, -1:]  # (batch, 1), below the total
    return tf.reduce_sum(tf.cast(cumulative <= target, tf.int32), axis=-1)
