"""How the codebook is used: the fraction of codes chosen, and the effective number of codes in use."""

from __future__ import annotations

import keras
import tensorflow as tf


class _CodeHistogram(keras.metrics.Metric):
    """Counts how often each of `num_embeddings` codes is chosen over an epoch (the counts reset with the metric).

    Args:
        num_embeddings: K, the codebook's size.
        name: the metric's name; None: the subclass's `default_name`.
    """

    default_name = ""

    def __init__(self, num_embeddings: int, name: str | None = None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)
        self.num_embeddings = num_embeddings
        self.counts = self.add_variable(shape=(num_embeddings,), initializer="zeros", name="counts",
                                        aggregation="sum")

    def update_state(self, indices, sample_weight=None):
        flat = tf.reshape(tf.cast(indices, tf.int32), [-1])  # a segment sum, not bincount, which XLA cannot compile
        self.counts.assign_add(tf.math.unsorted_segment_sum(tf.ones_like(flat, self.dtype), flat, self.num_embeddings))

    def reset_state(self):
        self.counts.assign(tf.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings}


@keras.saving.register_keras_serializable(package="keras_vqvae")
class CodebookUsage(_CodeHistogram):
    """Fraction of the codebook's `num_embeddings` codes chosen at least once since the last reset."""

    default_name = "codebook_usage"

    def result(self):
        return tf.reduce_mean(tf.cast(self.counts > 0, self.dtype))


@keras.saving.register_keras_serializable(package="keras_vqvae")
class Perplexity(_CodeHistogram):
    """exp(entropy) of the distribution of the `num_embeddings` codes since the last reset: the effective number of
    codes in use."""

    default_name = "perplexity"

    def result(self):
        probabilities = self.counts / tf.maximum(tf.reduce_sum(self.counts), 1.0)
        entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probabilities), probabilities))
        return tf.exp(entropy)
