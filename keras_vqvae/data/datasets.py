"""Slices as `tf.data` pipelines: batches in [-0.5, 0.5], padded to a square and resized, kept in memory or on disk
after the first pass, and for training permuted and shuffled by a seed.
"""

from __future__ import annotations

import glob
import os
import uuid

import numpy as np
import tensorflow as tf

from keras_vqvae.data.sets import SliceSet
from keras_vqvae.errors import InputError, existing_folder, folder_to_write


def sharded_by_element() -> tf.data.Options:
    """Options under which a multi-worker strategy gives each worker every N-th batch of the same (seeded) order,
    the sharding that suits pipelines read from memory or from a list of files."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


SHUFFLE_BUFFER = 4096  # slices a training pipeline reshuffles among each epoch, after permuting the whole split


def make_dataset(slice_set: SliceSet, image_size: int, batch_size: int, *, training: bool = False,
                 seed: int | None = None, cache: str = "memory", labels: bool = False) -> tf.data.Dataset:
    """Batches of images (batch, image_size, image_size, 1) float32 in [-0.5, 0.5], or with `labels` of
    (images, tissue labels (batch, image_size, image_size) uint8 in 0..3).

    Args:
        slice_set: the slices, decoded in parallel.
        image_size: S; each slice is padded to a square and resized to S x S with antialiasing.
        batch_size: images per batch.
        training: whether the batches are for training: then the whole split is permuted (with `seed`) before it
            is decoded, so that every batch mixes subjects from the whole split (slices come in name order, subject
            by subject), and reshuffled each epoch within a buffer of SHUFFLE_BUFFER slices. Otherwise the slices
            keep their order.
        seed: the seed of that order; the same seed gives the same batches. None: another order every time.
        cache: where the decoded, resized slices are kept after the first pass: 'memory', 'none', or a path prefix
            for files on disk (for data larger than memory), built here, before the first batch, under a name that
            holds a digest of what they hold (`SliceSet.fingerprint`, the size and the order), so that a later run
            reuses them only for the same slices and rebuilds them for any others. A cache is written under a
            temporary name and renamed once complete: one cut short by a kill is never read, nor in the way.
        labels: whether each image comes with its tissue labels (`SliceSet.has_labels`), padded and resized alike
            (nearest label); a ValueError when the set has none.

    Returns:
        A `tf.data.Dataset` of batches, prefetched, sharded by element between workers.
    """
    if len(slice_set) == 0:
        raise InputError(f"the {slice_set.name} split has no slices: give more subjects or another folder")
    if cache not in ("memory", "none"):  # a path prefix: its folder must exist and take the files
        cache = os.path.expanduser(cache)
        folder_to_write(existing_folder(os.path.dirname(cache) or ".", "--cache folder", "create it, or give --cache "
                                        "memory or none"), "--cache")
    if labels and not slice_set.has_labels:
        raise ValueError(f"the {slice_set.name} split has no tissue labels")
    if training:
        slice_set = slice_set.reordered(np.random.default_rng(seed).permutation(len(slice_set)))

    def normalise(image):  # (H, W, 1) in [0, 1] -> (image_size, image_size, 1) in [-0.5, 0.5]
        return tf.clip_by_value(_square(image, image_size, "bilinear"), 0.0, 1.0) - 0.5

    def normalise_labelled(image, label):  # and (H, W, 1) labels -> (image_size, image_size)
        return normalise(image), _square(label, image_size, "nearest")[..., 0]

    if labels:
        dataset = tf.data.Dataset.zip(slice_set.decoded(), slice_set.decoded_labels())
        dataset = dataset.map(normalise_labelled, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = slice_set.decoded().map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
    if cache == "memory":
        dataset = dataset.cache()
    elif cache != "none":
        name = f"{slice_set.name}_{image_size}px{'_labelled' if labels else ''}_{slice_set.fingerprint(labels)[:16]}"
        dataset = _cached_on_disk(dataset, cache + name)
    if training:
        dataset = dataset.shuffle(min(len(slice_set), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(sharded_by_element())


def _square(image: tf.Tensor, size: int, method: str) -> tf.Tensor:
    """(H, W, C) centred in a square padded with zeros, resized to (size, size, C): antialiased unless "nearest"."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(height, width)
    image = tf.image.pad_to_bounding_box(image, (side - height) // 2, (side - width) // 2, side, side)
    return tf.image.resize(image, (size, size), method=method, antialias=method != "nearest")


def _cached_on_disk(dataset: tf.data.Dataset, name: str) -> tf.data.Dataset:
    """`dataset` read from the disk cache `name` (tf.data's files NAME.index, NAME.data-*), written first when there
    is none: under NAME.partial-PID-RANDOM, renamed once whole. A partial cache of a run that is no longer running is
    deleted."""
    for stale in glob.glob(glob.escape(name) + ".partial-*"):
        if not _running(stale.rsplit(".partial-", 1)[1].split("-")[0]):
            os.remove(stale)
    if not os.path.exists(name + ".index"):
        temporary = f"{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        dataset.cache(temporary).reduce(0, lambda count, _: count + 1)  # one whole pass writes every file
        for file in glob.glob(glob.escape(temporary) + ".*"):
            suffix = file[len(temporary):]
            if suffix.startswith((".index", ".data-")):
                os.replace(file, name + suffix)
            else:  # the writer's lock file
                os.remove(file)
    return dataset.cache(name)


def _running(pid: str) -> bool:
    """Whether the process `pid` (digits) is running on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # not a number we wrote, or another user's process: leave its files alone
    return True


def pixel_variance(dataset: tf.data.Dataset) -> float:
    """The variance of every pixel of a dataset, in one pass: the normaliser of the VQ-VAE's reconstruction loss.

    Args:
        dataset: batches of images, as `make_dataset` gives them.

    Returns:
        The variance, a float; an InputError when it is zero (blank slices), which no loss can be normalised by.
    """
    total, total_sq, count = 0.0, 0.0, 0
    for images in dataset:
        values = images.numpy().astype(np.float64)
        total += values.sum()
        total_sq += np.square(values).sum()
        count += values.size
    mean = total / count
    variance = float(total_sq / count - mean * mean)
    if variance < 1e-12:  # far above rounding error, far below the variance of any slice that shows something
        raise InputError("every pixel of the training slices has the same value (they are blank), so there is "
                         "nothing to learn: check the images in --data")
    return variance


def to_input_size(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Maps (n, S, S) at the model's size back onto slices of `height` x `width`: the inverse of `make_dataset`'s
    padding to a square and resizing (bilinear), (n, height, width) float32."""
    side = max(height, width)
    resized = tf.image.resize(np.asarray(maps, np.float32)[..., None], (side, side), method="bilinear")[..., 0]
    top, left = (side - height) // 2, (side - width) // 2
    return resized.numpy()[:, top:top + height, left:left + width]
