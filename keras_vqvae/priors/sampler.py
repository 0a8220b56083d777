"""The one sampling interface: every prior gives samplers that draw code maps (num_samples, h, w) from a seed.

A sample's codes depend on the seed and the sample's index only, never on how many samples are drawn together:
sample i of seed s takes its randomness from the stateless seed fold_in((s, 0), i) (`sample_seeds`). So `predict`
drawing in batches of 8, `generate` drawing in batches of 64 and an exported SavedModel drawing all at once give the
same slices for the same seed. `draw` is the graph function all of them call.

A sampler that `inpaints` also draws around given codes: `draw(..., given=(codes, keep))` takes the given code
wherever `keep` is true and draws every other position from the prior given the codes before it, kept or drawn
(the healing step of anomaly detection, `keras_vqvae.anomaly`). The random numbers are the same as without `given`,
so keeping nothing draws exactly what `draw` draws.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.errors import InputError
from keras_vqvae.priors.autoregressive import ANY_POSITION

MAX_SEED = 2**31 - 1


def sample_seeds(seed, first_index, count):
    """Stateless seeds (count, 2) int32 of the samples first_index, ..., first_index + count - 1 of `seed`."""
    indices = tf.range(count) + tf.cast(first_index, tf.int32)  # (count,)
    base = tf.stack([tf.cast(seed, tf.int32), 0])
    return tf.map_fn(lambda index: tf.random.experimental.stateless_fold_in(base, index), indices,
                     fn_output_signature=tf.TensorSpec((2,), tf.int32))


def kept_or_drawn(drawn, given, position):
    """The codes (batch,) at raster `position`: `drawn` (batch,), except where `given` = (codes (batch, h * w) int32,
    keep (batch, h * w) bool) keeps its code there; `drawn` as it is when `given` is None."""
    if given is None:
        return drawn
    codes, keep = given
    return tf.where(keep[:, position], codes[:, position], drawn)


def flat_given(given):
    """`given` = (codes (batch, h, w), keep (batch, h, w)) as (codes (batch, h * w) int32, keep (batch, h * w) bool),
    or None."""
    if given is None:
        return None
    codes, keep = given
    batch = tf.shape(codes)[0]
    return tf.reshape(tf.cast(codes, tf.int32), (batch, -1)), tf.reshape(tf.cast(keep, tf.bool), (batch, -1))


def sample_labels(num_samples, num_classes: int, condition=None):
    """Class labels (num_samples,) int32 of a conditional prior's samples: `condition` for every sample (the null
    class, label num_classes, for `ANY_POSITION`), or, with none, labels spread evenly over the num_classes classes
    (slice positions), from the first to the last."""
    if condition is not None:
        condition = tf.cast(condition, tf.int32)
        label = tf.where(condition == ANY_POSITION, num_classes, condition)
        return tf.fill([num_samples], label)
    spread = tf.linspace(0.0, float(num_classes - 1), num_samples)  # (num_samples,) float32
    return tf.cast(tf.round(spread), tf.int32)


class Sampler:
    """Draws code maps (num_samples, h, w) int32 from a prior; subclasses implement `_draw` for one batch.

    Args:
        prior: the trained prior; it has `grid_shape` (h, w) and, when conditional, `num_classes` > 0.
    """

    name = ""
    inpaints = False  # whether `draw` takes `given` codes to draw around

    def __init__(self, prior: keras.Model):
        self.prior = prior

    @property
    def num_classes(self) -> int:
        """Class labels the prior is conditioned on (slice positions); 0 for an unconditional prior."""
        return getattr(self.prior, "num_classes", 0)

    @property
    def has_null_class(self) -> bool:
        """Whether the prior also draws maps of any class (condition `ANY_POSITION`)."""
        return getattr(self.prior, "has_null_class", False)

    def draw(self, seeds, temperature, labels=None, given=None):
        """Codes (batch, h, w) int32 of one batch: seeds (batch, 2) int32 from `sample_seeds`, temperature a float
        scalar, labels (batch,) int32 or None. The graph function behind `sample` and the SavedModel's `sample`.
        given: None, or, for a sampler that `inpaints`, (codes (batch, h, w) int, keep (batch, h, w) bool): the
        codes to keep where `keep` is true; the rest are drawn given them.

        A sampler either sets `draw` to one graph function for the whole batch, or implements `_draw`, which
        reports progress as it goes."""
        return self._draw(seeds, temperature, labels, lambda count: None, given)

    def _draw(self, seeds, temperature, labels, advance, given=None):
        """`draw`, calling `advance(k)` after drawing k codes (for progress); by default `draw` all at once."""
        codes = self.draw(seeds, temperature, labels) if given is None else self.draw(seeds, temperature, labels, given)
        advance(int(np.prod(codes.shape)))
        return codes

    def labels(self, num_samples: int, condition: int | None = None):
        """The class labels (num_samples,) int32 that `sample` draws maps of (see `sample_labels`), or None for an
        unconditional prior."""
        return sample_labels(num_samples, self.num_classes, condition) if self.num_classes else None

    def sample(self, num_samples: int, seed: int = 0, temperature: float = 1.0, batch_size: int = 8,
               condition: int | None = None, verbose: int = 0) -> np.ndarray:
        """Code maps (num_samples, h, w) int32.

        Args:
            num_samples: how many maps to draw.
            seed: 0 <= seed < 2**31; the same seed and temperature give the same maps, whatever the batch size.
            temperature: below 1 favours likely maps, above 1 flattens the distribution.
            batch_size: maps drawn together (a matter of speed and memory only).
            condition: the class label (slice position) of every map, for a conditional prior, or `ANY_POSITION`
                (-1) for maps of any position from a prior trained with a null class; None spreads a conditional
                prior's maps evenly over its classes.
            verbose: progress as keras.utils.Progbar's: 0 none, 1 a bar, 2 a line at the end.
        """
        check_sampling_arguments(self.num_classes, num_samples, seed, temperature, batch_size, condition,
                                 self.has_null_class)
        h, w = self.prior.grid_shape
        labels = self.labels(num_samples, condition)
        progress = keras.utils.Progbar(num_samples * h * w, verbose=verbose, unit_name="code")
        batches = []
        for start in range(0, num_samples, batch_size):
            size = min(batch_size, num_samples - start)
            batch_labels = None if labels is None else labels[start:start + size]
            codes = self._draw(sample_seeds(seed, start, size), tf.constant(temperature, tf.float32), batch_labels,
                               progress.add)
            batches.append(keras.ops.convert_to_numpy(codes))
        return np.concatenate(batches)


def check_sampling_arguments(num_classes: int, num_samples, seed, temperature, batch_size, condition,
                             has_null_class: bool = False) -> None:
    """Raises InputError naming the first argument that cannot be used with a prior of `num_classes` classes (and,
    with `has_null_class`, a null class for any position)."""
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise InputError(f"the number of samples must be a positive whole number, got {num_samples}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"the batch size must be a positive whole number, got {batch_size}")
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"the seed must be between 0 and {MAX_SEED}, got {seed}")
    if not temperature > 0:
        raise InputError(f"the temperature must be positive, got {temperature}")
    if condition is None:
        return
    if not num_classes:
        raise InputError(f"this prior was trained without a condition, so it cannot take condition {condition}: "
                         f"leave the condition out, or train a prior with slice-position conditioning")
    if condition == ANY_POSITION and has_null_class:
        return
    if not 0 <= condition < num_classes:
        any_position = f", or {ANY_POSITION} for any position" if has_null_class else ""
        raise InputError(f"condition {condition} is out of range: this prior knows conditions 0 to "
                         f"{num_classes - 1} (slice positions){any_position}")
