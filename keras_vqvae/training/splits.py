"""A run's data as its stages read it: the three splits of slices, each split's batches, and its images decoded once.

The VQ-VAE stage trains on `training_batches()` and evaluates on `batches('validate')` and `batches('test')`; the
prior stage and the scoring of generated slices read `images(split)`, decoded on first use and then held, once, for
every later reader (the code maps, the judge, the generation metrics).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vqvae.data import Slices, SliceSet, SubjectSplit, load_slices, make_dataset
from keras_vqvae.errors import InputError
from keras_vqvae.training.config import TrainConfig

DECODING_BATCH_SIZE = 64  # slices per batch when a split is decoded, encoded or reconstructed in one pass


class RunSplits:
    """The slices of a run and what the stages make of them.

    Args:
        config: the run's configuration (image size, batch size, cache, seed).
        slices: its three splits.
    """

    def __init__(self, config: TrainConfig, slices: Slices):
        self.config, self.slices = config, slices
        self._images: dict[str, np.ndarray] = {}
        self._batches: dict[str, tf.data.Dataset] = {}

    @classmethod
    def load(cls, config: TrainConfig) -> RunSplits:
        """The splits of `config.data` (the embedded data when None), announced with their notes; an InputError when
        `config.condition` asks for slice positions the file names do not carry."""
        slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
        print(slices.summary())
        for note in slices.notes:
            print(f"note: {note}")
        if config.condition == "slice" and not slices.carry_positions:
            raise InputError("--condition slice needs slice numbers in the file names (like case_001_slice_0.png), "
                             "and some names carry none: rename the files, or use --condition none")
        return cls(config, slices)

    def split(self, name: str) -> SliceSet:
        return {split.name: split for split in self.slices.splits()}[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(split.name for split in self.slices.splits())

    def positions(self, name: str) -> np.ndarray:
        """The slice positions (n,) int32 of split `name`, in its order (-1 where a file name carries none)."""
        return np.array(self.split(name).slice_numbers, np.int32)

    def batches(self, name: str) -> tf.data.Dataset:
        """Split `name` in its order, in batches of the run's batch size in [-0.5, 0.5], kept as `config.cache`
        says after the first pass (for evaluating the VQ-VAE after every epoch): the same pipeline every call."""
        if name not in self._batches:
            self._batches[name] = make_dataset(self.split(name), self.config.image_size, self.config.batch_size,
                                               cache=self.config.cache)
        return self._batches[name]

    def training_batches(self) -> tf.data.Dataset:
        """The training split, permuted and shuffled by the run's seed, for fitting the VQ-VAE: a new pipeline each
        call (its shuffle starts afresh)."""
        return make_dataset(self.slices.train, self.config.image_size, self.config.batch_size, training=True,
                            seed=self.config.seed, cache=self.config.cache)

    def images(self, name: str) -> np.ndarray:
        """Every slice of split `name` (n, S, S, 1) float32 in [0, 1], in its order: decoded in one pass on first use
        (nothing of it cached by tf.data), then held for every later call."""
        if name not in self._images:
            self._images[name] = decoded_images(self.split(name), self.config.image_size)
        return self._images[name]


def decoded_images(slice_set: SliceSet, image_size: int) -> np.ndarray:
    """The slices of `slice_set` (n, S, S, 1) float32 in [0, 1], as the data pipeline gives them, in one pass."""
    dataset = make_dataset(slice_set, image_size, DECODING_BATCH_SIZE, cache="none")
    return np.concatenate([batch.numpy() for batch in dataset]) + 0.5
