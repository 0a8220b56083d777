"""Code maps: what a trained VQ-VAE's encoder makes of each split, as `tf.data` pipelines for training a prior."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vqvae.data.datasets import sharded_by_element


def make_code_dataset(codes: np.ndarray, batch_size: int, *, labels: np.ndarray | None = None,
                      training: bool = False, seed: int | None = None,
                      drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of code maps (batch, h, w) int32, or (codes, labels (batch,) int32) pairs when `labels` is given.

    Shuffled each epoch when `training` (deterministically when `seed` is given), batched (without the last,
    smaller batch when `drop_remainder`) and prefetched.
    """
    codes = tf.convert_to_tensor(codes, tf.int32)
    elements = codes if labels is None else (codes, tf.convert_to_tensor(labels, tf.int32))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if training:
        dataset = dataset.shuffle(len(codes), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE).with_options(
        sharded_by_element())
