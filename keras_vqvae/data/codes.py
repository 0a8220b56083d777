"""Code maps: what a trained VQ-VAE's encoder makes of each split, as `tf.data` pipelines for training a prior."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vqvae.data.datasets import sharded_by_element


def make_code_dataset(codes: np.ndarray, batch_size: int, *, labels: np.ndarray | None = None,
                      training: bool = False, seed: int | None = None,
                      drop_remainder: bool = False) -> tf.data.Dataset:
    """Code maps as a `tf.data` pipeline for training or evaluating a prior.

    Args:
        codes: code maps (n, h, w) int, e.g. `VQVAE.encode` of every slice of a split.
        batch_size: maps per batch.
        labels: (n,) int class labels of the maps (slice positions) for a conditional prior, or None.
        training: shuffle the maps each epoch.
        seed: the seed of that shuffle (None: another order every time).
        drop_remainder: leave out the last, smaller batch (for batch normalisation).

    Returns:
        A `tf.data.Dataset` of code maps (batch, h, w) int32, or of (codes, labels (batch,) int32) pairs when
        `labels` is given, prefetched.
    """
    codes = tf.convert_to_tensor(codes, tf.int32)
    elements = codes if labels is None else (codes, tf.convert_to_tensor(labels, tf.int32))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if training:
        dataset = dataset.shuffle(len(codes), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE).with_options(
        sharded_by_element())
