"""What every autoregressive prior over code maps shares: the training objective, its metrics, and conditioning on a
class label (a slice position) with a null class that stands for "any position".

An autoregressive prior models p(codes | c) = prod_p p(code_p | codes before p in raster order, c) (van den Oord et
al. 2016, eq. 1, with eq. 4's condition c). Subclasses implement `call(codes, labels)` -> logits; this base trains
them with `fit` (cross-entropy of each code given the codes before it) and evaluates them.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_vqvae.models.optimization import minimize, step_logs
from keras_vqvae.priors.distribution import code_distribution

ANY_POSITION = -1  # the condition that asks a prior trained with a null class for a slice of any position
UNCONDITIONAL_RATE = 0.1  # the default fraction of a conditional prior's training maps taught as the null class


class AutoregressivePrior(keras.Model):
    """Base class of priors over code-index maps, trained with `fit`.

    Training minimises the cross-entropy of each code given the codes before it in raster order; tracked metrics are
    `loss` (nats per code), `nll` (bits per code: loss / ln 2) and `accuracy` (of the most likely code). Data for
    `fit` / `evaluate`: batches of codes (batch, h, w), or (codes, labels) with labels (batch,) when the prior is
    conditional (also as `fit(x=codes, y=labels)`).

    Args:
        num_embeddings: K, the VQ-VAE's codebook size.
        grid_shape: (h, w) of the code maps, the size samples are drawn at.
        num_classes: number of class labels to condition on (e.g. slice positions); 0 for none. Default 0.
        unconditional_rate: with num_classes > 0, the fraction of training maps whose label is replaced by a null
            class (label num_classes), so that the same prior also samples maps of any class (condition
            `ANY_POSITION`); 0 for none. Default `UNCONDITIONAL_RATE`, 0.1.
    """

    def __init__(self, num_embeddings: int, grid_shape: tuple[int, int], num_classes: int = 0,
                 unconditional_rate: float = UNCONDITIONAL_RATE, **kwargs):
        super().__init__(**kwargs)
        if num_embeddings < 2 or num_classes < 0 or not 0.0 <= unconditional_rate < 1.0:
            raise ValueError(f"need num_embeddings >= 2, num_classes >= 0 and 0 <= unconditional_rate < 1, got "
                             f"{num_embeddings}, {num_classes}, {unconditional_rate}")
        self.num_embeddings, self.grid_shape = num_embeddings, tuple(int(side) for side in grid_shape)
        self.num_classes, self.unconditional_rate = num_classes, unconditional_rate
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def num_labels(self) -> int:
        """Rows of the label embeddings: the classes, and the null class when the prior has one."""
        return self.num_classes + int(self.has_null_class)

    @property
    def has_null_class(self) -> bool:
        return bool(self.num_classes) and self.unconditional_rate > 0

    @property
    def metrics(self):
        return [self.loss_tracker, self.nll_tracker, self.accuracy]

    def build(self, input_shape=None):
        codes = tf.zeros((1, *self.grid_shape), tf.int32)
        self.call(codes, tf.zeros((1,), tf.int32) if self.num_classes else None)  # creates every weight
        self.built = True

    def call(self, codes, labels=None, training=None):
        """Logits (batch, h, w, K) of each code given the codes before it; codes (batch, h, w) int."""
        raise NotImplementedError

    def distribution(self, codes, labels=None, temperature: float = 1.0):
        """The model's tfp Categorical over each code (batch, h, w), at a sampling temperature."""
        return code_distribution(self(codes, labels), temperature)

    def log_prob(self, codes, labels=None):
        """log p(codes) in nats, (batch,): the sum over positions of each code's log-probability."""
        return tf.reduce_sum(self.distribution(codes, labels).log_prob(codes), axis=[1, 2])

    def code_nll(self, codes, labels=None):
        """-log2 p(code_p | codes before p, c) of each code, in bits, (batch, h, w) float32 (eq. 1's factors): how
        unlikely the prior finds each code of a map. Its mean is the `nll` metric; anomaly detection scores codes by
        it (`keras_vqvae.anomaly`)."""
        codes = tf.cast(codes, tf.int32)
        logits = tf.cast(self(codes, labels, training=False), tf.float32)  # (batch, h, w, K)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(codes, logits) / math.log(2.0)

    def _unpack(self, data):
        """codes, or (codes, labels) as `fit(x=codes, y=labels)` also passes them -> (codes, labels or None)."""
        codes, labels = data if isinstance(data, (tuple, list)) else (data, None)
        if bool(self.num_classes) != (labels is not None):
            wanted = "(codes, labels) pairs" if self.num_classes else "code maps without labels"
            raise ValueError(f"this prior has num_classes={self.num_classes}: give it {wanted}")
        return tf.cast(codes, tf.int32), labels

    def _cross_entropy(self, codes, labels, training):
        logits = self(codes, labels, training=training)  # (batch, h, w, K)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(codes, tf.cast(logits, tf.float32))
        return tf.reduce_mean(cross_entropy), logits  # nats per code

    def _track(self, loss, codes, logits):
        self.loss_tracker.update_state(loss)
        self.nll_tracker.update_state(loss / math.log(2.0))
        self.accuracy.update_state(codes, logits)
        return step_logs(self.metrics)

    def _with_null_labels(self, labels):
        """labels (batch,) with a fraction `unconditional_rate` of them replaced by the null class, drawn from the
        training step's number, so that a resumed run drops the labels it would have dropped."""
        seed = tf.stack([tf.cast(self.optimizer.iterations, tf.int32), 0])
        dropped = tf.random.stateless_uniform(tf.shape(labels), seed) < self.unconditional_rate
        return tf.where(dropped, self.num_classes, tf.cast(labels, tf.int32))

    def train_step(self, data):
        codes, labels = self._unpack(data)
        if self.has_null_class:
            labels = self._with_null_labels(labels)
        with tf.GradientTape() as tape:
            loss, logits = self._cross_entropy(codes, labels, training=True)
        minimize(self.optimizer, loss, self.trainable_variables, tape)
        return self._track(loss, codes, logits)

    def test_step(self, data):
        codes, labels = self._unpack(data)
        loss, logits = self._cross_entropy(codes, labels, training=False)
        return self._track(loss, codes, logits)

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings, "grid_shape": self.grid_shape,
                "num_classes": self.num_classes, "unconditional_rate": self.unconditional_rate}
