"""Vector quantisation with a straight-through gradient (van den Oord et al. 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_vqvae")
class VectorQuantizer(keras.layers.Layer):
    """Replaces each input vector by its nearest codebook vector, passing gradients straight through.

    Each vector z_e of the last axis is mapped to the code k = argmin_j ||z_e - e_j||^2 (squared L2 distance,
    computed in float32 whatever the dtype policy) and replaced by e_k. The forward pass outputs e_k, the backward
    pass copies the gradient of e_k onto z_e (straight-through estimator). `vq_loss` gives the VQ loss (paper eq. 3)
    that the model adds to its loss:

        vq_loss = ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2      (codebook term + commitment term)

    With `ema_decay` set, the codebook term is dropped and the codebook follows exponential moving averages of the
    vectors assigned to each code instead (paper appendix A.1, eqs. 6-8), with Laplace smoothing of cluster sizes.
    A code that no input chose for `dead_code_steps` training steps in a row is restarted from a random input vector
    of the current batch, and its moving averages restart with it.

    Args:
        num_embeddings: K, the number of codes. Default 256.
        embedding_dim: D, the length of each code vector; inputs have D channels. Default 32.
        beta: commitment weight. Default 0.25.
        ema_decay: gamma of the moving-average update, or None to learn the codebook through the codebook term by
            gradient descent. Default 0.99.
        epsilon: Laplace smoothing of the moving-average cluster sizes. Default 1e-5.
        dead_code_steps: restart a code unused for this many training steps; 0 never restarts. Default 50.

    Call arguments:
        inputs: (..., embedding_dim) encoder outputs z_e.
        training: whether to update the codebook (moving averages, dead-code restarts).

    Returns:
        quantized: (..., embedding_dim) float32, e_k in the forward pass, straight-through in the backward pass.
        indices: (...) int32 codes k.

    Reference:
        A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
    """

    def __init__(self, num_embeddings: int = 256, embedding_dim: int = 32, beta: float = 0.25,
                 ema_decay: float | None = 0.99, epsilon: float = 1e-5, dead_code_steps: int = 50, **kwargs):
        kwargs.setdefault("dtype", "float32")  # distances, losses and outputs stay float32 under mixed precision
        super().__init__(**kwargs)
        if num_embeddings < 2 or embedding_dim < 1:
            raise ValueError(f"need num_embeddings >= 2 and embedding_dim >= 1, got {num_embeddings}, {embedding_dim}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.beta = beta
        self.ema_decay = ema_decay
        self.epsilon = epsilon
        self.dead_code_steps = dead_code_steps

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(f"inputs have {input_shape[-1]} channels, the codebook has {self.embedding_dim}")
        k, d = self.num_embeddings, self.embedding_dim
        # State that every replica updates identically from all-reduced statistics, so "mean" keeps it as it is.
        state = dict(trainable=False, aggregation="mean")
        self.codebook = self.add_weight(shape=(k, d), name="codebook",
                                        initializer=keras.initializers.RandomUniform(-1.0 / k, 1.0 / k),
                                        trainable=self.ema_decay is None, aggregation="mean")
        if self.ema_decay is not None:
            # Each code starts as a cluster of one vector, itself, so that eq. 8 gives back the initial codebook.
            self.ema_cluster_size = self.add_weight(shape=(k,), name="ema_cluster_size", initializer="ones", **state)
            self.ema_embedding_sum = self.add_weight(shape=(k, d), name="ema_embedding_sum", initializer="zeros",
                                                     **state)
            self.ema_embedding_sum.assign(self.codebook)
        # Codes start out dead, so the first training batch restarts every code it does not use from its own
        # encoder outputs: a data-dependent initialisation.
        self.steps_unused = self.add_weight(shape=(k,), name="steps_unused", **state,
                                            initializer=keras.initializers.Constant(self.dead_code_steps))
        self.updates = self.add_weight(shape=(), name="updates", initializer="zeros", **state)
        self.restarts = self.add_weight(shape=(), name="restarts", initializer="zeros", **state)

    def _squared_distances(self, flat_inputs):
        """(N, D) float32 vectors -> (N, K) squared L2 distances to every code."""
        codebook = tf.convert_to_tensor(self.codebook)  # (K, D)
        return (tf.reduce_sum(tf.square(flat_inputs), axis=1, keepdims=True)
                - 2.0 * tf.matmul(flat_inputs, codebook, transpose_b=True)
                + tf.reduce_sum(tf.square(codebook), axis=1))

    def nearest_indices(self, inputs):
        """(..., embedding_dim) vectors -> (...) int32 indices of the nearest codes (squared L2, float32)."""
        flat_inputs = tf.reshape(tf.cast(inputs, tf.float32), [-1, self.embedding_dim])  # (N, D)
        flat_indices = tf.argmin(self._squared_distances(flat_inputs), axis=1, output_type=tf.int32)  # (N,)
        return tf.reshape(flat_indices, tf.shape(inputs)[:-1])

    def lookup(self, indices):
        """(...) integer indices -> (..., embedding_dim) float32 codebook vectors."""
        return tf.gather(self.codebook, tf.cast(indices, tf.int32))

    def call(self, inputs, training=None):
        inputs = tf.cast(inputs, tf.float32)  # z_e: (..., D)
        flat_inputs = tf.reshape(inputs, [-1, self.embedding_dim])  # (N, D)
        distances = self._squared_distances(flat_inputs)  # (N, K)
        flat_indices = tf.argmin(distances, axis=1, output_type=tf.int32)  # (N,)
        indices = tf.reshape(flat_indices, tf.shape(inputs)[:-1])  # (...)
        quantized = self.lookup(indices)  # e_k: (..., D)
        if training:
            self._update_codebook(flat_inputs, flat_indices, tf.reduce_min(distances, axis=1))

        quantized = inputs + tf.stop_gradient(quantized - inputs)  # straight-through estimator
        return quantized, indices

    def vq_loss(self, inputs, quantized, indices):
        """The VQ loss (eq. 3 without its reconstruction term) of encoder outputs z_e (..., D) and what the layer
        made of them: quantized (..., D), whose values are e_k, and indices (...) k.

        The model that trains this layer adds it to its loss. It is computed from the tensors of each call, not
        collected with `add_loss`: under a tf.distribute strategy the losses a shared layer collects mix up
        replicas."""
        inputs = tf.cast(inputs, tf.float32)
        commitment_loss = tf.reduce_mean(tf.square(inputs - tf.stop_gradient(quantized)))  # ||z_e - sg[e]||^2
        if self.ema_decay is not None:
            return self.beta * commitment_loss  # eq. 3 without the codebook term, replaced by eqs. 6-8
        codebook_loss = tf.reduce_mean(tf.square(tf.stop_gradient(inputs) - self.lookup(indices)))  # ||sg[z_e] - e||^2
        return codebook_loss + self.beta * commitment_loss  # eq. 3

    def _update_codebook(self, flat_inputs, flat_indices, errors):
        """One training batch's update of the codebook state: the moving averages (when the codebook follows them),
        then the dead-code restarts.

        flat_inputs (N, D) are the batch's encoder outputs, flat_indices (N,) their codes and errors (N,) their
        squared distances to those codes.
        """
        counts = _sum_over_replicas(
            tf.math.unsorted_segment_sum(tf.ones_like(errors), flat_indices, self.num_embeddings))  # n_i: (K,)
        if self.ema_decay is not None:
            self._moving_average_update(flat_inputs, flat_indices, counts)
        steps_unused = tf.where(counts > 0, 0.0, self.steps_unused + 1.0)  # (K,)
        if self.dead_code_steps > 0:
            steps_unused = self._restart_dead_codes(flat_inputs, errors, steps_unused)
        self.steps_unused.assign(steps_unused)
        self.updates.assign_add(1.0)

    def _moving_average_update(self, flat_inputs, flat_indices, counts):
        """The codebook as exponential moving averages of the vectors each code was chosen for (eqs. 6-8), with
        Laplace smoothing of the cluster sizes n_i; counts (K,) are this batch's n_i, summed over replicas."""
        k = self.num_embeddings
        vector_sums = _sum_over_replicas(tf.math.unsorted_segment_sum(flat_inputs, flat_indices, k))  # (K, D)
        cluster_size = self.ema_decay * self.ema_cluster_size + (1.0 - self.ema_decay) * counts  # eq. 6
        embedding_sum = self.ema_decay * self.ema_embedding_sum + (1.0 - self.ema_decay) * vector_sums  # eq. 7
        total = tf.reduce_sum(cluster_size)
        smoothed_size = (cluster_size + self.epsilon) / (total + k * self.epsilon) * total
        self.ema_cluster_size.assign(cluster_size)
        self.ema_embedding_sum.assign(embedding_sum)
        self.codebook.assign(embedding_sum / smoothed_size[:, None])  # eq. 8

    def _restart_dead_codes(self, flat_inputs, errors, steps_unused):
        """Restarts every code unused for `dead_code_steps` steps from an encoder output of this batch; returns
        steps_unused (K,) with the restarted codes' counters at 0.

        The replacement is drawn with probability proportional to its quantisation error (as in k-means++ seeding),
        so restarts go where the codebook fits worst, not to the background that fills most of a brain slice and
        that one code already represents. A restarted code's moving averages restart as a cluster of one vector:
        itself.
        """
        dead = steps_unused >= self.dead_code_steps  # (K,)
        # Inverse-CDF draws; every replica draws the same positions, and all use the first replica's vectors.
        cumulative = tf.cumsum(errors + 1e-12)  # (N,)
        seed = tf.stack([tf.cast(self.updates, tf.int32), 0])
        targets = tf.random.stateless_uniform([self.num_embeddings], seed=seed) * cumulative[-1]  # (K,)
        picks = tf.minimum(tf.searchsorted(cumulative, targets), tf.size(errors) - 1)  # (K,)
        replacements = _from_first_replica(tf.gather(flat_inputs, picks))  # (K, D)
        self.codebook.assign(tf.where(dead[:, None], replacements, self.codebook))
        if self.ema_decay is not None:
            self.ema_cluster_size.assign(tf.where(dead, 1.0, self.ema_cluster_size))
            self.ema_embedding_sum.assign(tf.where(dead[:, None], replacements, self.ema_embedding_sum))
        self.restarts.assign_add(tf.reduce_sum(tf.cast(dead, tf.float32)))
        return tf.where(dead, 0.0, steps_unused)

    def compute_output_spec(self, inputs, training=None):
        return (keras.KerasTensor(inputs.shape, dtype="float32"),
                keras.KerasTensor(inputs.shape[:-1], dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "beta": self.beta, "ema_decay": self.ema_decay, "epsilon": self.epsilon,
                "dead_code_steps": self.dead_code_steps}


def _sum_over_replicas(value):
    """Sum of `value` over the replicas of a tf.distribute strategy; `value` itself outside one."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _from_first_replica(value):
    """The first replica's `value` on every replica; `value` itself outside a strategy."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value[None], axis=0)[0]
