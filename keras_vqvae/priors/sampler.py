"""The one sampling interface: every prior gives samplers that draw code maps (num_samples, h, w) from a seed.

A sample's codes depend on the seed and the sample's index only, never on how many samples are drawn together:
sample i of seed s takes its randomness from the stateless seed fold_in((s, 0), i) (`sample_seeds`). So `predict`
drawing in batches of 8, `generate` drawing in batches of 64 and an exported SavedModel drawing all at once give the
same slices for the same seed.

A `Sampler` implements one method, `_draw`, which draws one batch and reports its progress; `draw` (one batch, also
inside a graph function: the SavedModel's `sample`) and `sample` (any number of maps, batch by batch, with a
progress bar) both call it. An `InpaintingSampler` also draws around given codes: `draw(..., given=(codes, keep))`
takes the given code wherever `keep` is true and draws every other position from the prior given the codes before
it, kept or drawn (the healing step of anomaly detection, `keras_vqvae.anomaly`). The random numbers are the same as
without `given`, so keeping nothing draws exactly what `draw` draws. The `ReferenceSampler` draws so from any
autoregressive prior, slowly; a `CachingSampler` draws a whole batch in one graph function (the PixelCNN's and the
transformer's `cached` samplers).
"""

from __future__ import annotations

import abc
import math
from typing import Callable, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.errors import InputError
from keras_vqvae.priors.autoregressive import ANY_POSITION
from keras_vqvae.priors.distribution import draw_codes, sample_uniforms

MAX_SEED = 2**31 - 1


def sample_seeds(seed, first_index, count):
    """Stateless seeds (count, 2) int32 of the samples first_index, ..., first_index + count - 1 of `seed`."""
    indices = tf.range(count) + tf.cast(first_index, tf.int32)  # (count,)
    base = tf.stack([tf.cast(seed, tf.int32), 0])
    return tf.map_fn(lambda index: tf.random.experimental.stateless_fold_in(base, index), indices,
                     fn_output_signature=tf.TensorSpec((2,), tf.int32))


def draw_or_keep(logits, temperature, uniforms, given, position):
    """The codes (batch,) int32 at raster `position`: drawn from logits (batch, K) at `temperature` with the
    position's uniform numbers uniforms[:, position] (uniforms (batch, h * w), see `draw_codes`), except where
    `given` = (codes (batch, h * w) int32, keep (batch, h * w) bool) keeps its code; all drawn when `given` is None."""
    drawn = draw_codes(logits, temperature, uniforms[:, position])
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


def set_codes(codes, position, new_codes):
    """codes (batch, h, w) with new_codes (batch,) written at raster position `position`."""
    h, w = codes.shape[1], codes.shape[2]
    at_position = tf.reshape(tf.one_hot(position, h * w, on_value=True, off_value=False), (1, h, w))
    return tf.where(at_position, new_codes[:, None, None], codes)


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


@tf.autograph.experimental.do_not_convert  # a body of a docstring alone is more than AutoGraph can convert
def _no_progress(positions: int) -> None:
    """The `advance` of a batch drawn by `draw`: progress goes nowhere."""


class Sampler(abc.ABC):
    """Draws code maps (num_samples, h, w) int32 from a prior; subclasses implement `_draw` for one batch.

    Args:
        prior: the trained prior: it has `grid_shape` (h, w), `num_classes` (0 for an unconditional prior) and
            `has_null_class`.
    """

    name: ClassVar[str]  # what `make_sampler` and `predict --sampler` call it, unique among its prior's samplers

    def __init__(self, prior: keras.Model):
        self.prior = prior

    @property
    def num_classes(self) -> int:
        """Class labels the prior is conditioned on (slice positions); 0 for an unconditional prior."""
        return self.prior.num_classes

    @property
    def has_null_class(self) -> bool:
        """Whether the prior also draws maps of any class (condition `ANY_POSITION`)."""
        return self.prior.has_null_class

    def draw(self, seeds, temperature, labels=None):
        """Codes (batch, h, w) int32 of one batch, eagerly or inside a graph function (the SavedModel's `sample`).

        Args:
            seeds: (batch, 2) int32 from `sample_seeds`.
            temperature: a float scalar.
            labels: (batch,) int32 class labels of a conditional prior's maps, or None.
        """
        return self._draw(seeds, temperature, labels, _no_progress)

    @abc.abstractmethod
    def _draw(self, seeds, temperature, labels, advance: Callable[[int], None]):
        """`draw`, calling `advance(k)` each time k more positions of every map of the batch are drawn (progress)."""

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
                               lambda positions, size=size: progress.add(positions * size))
            batches.append(keras.ops.convert_to_numpy(codes))
        return np.concatenate(batches)


class InpaintingSampler(Sampler):
    """A sampler that also draws around given codes; subclasses implement `_draw`, which takes them.

    Args:
        prior: as `Sampler`'s; an autoregressive prior, whose codes are drawn given the codes before them.
    """

    def draw(self, seeds, temperature, labels=None, given=None):
        """`Sampler.draw`, keeping given codes.

        Args:
            seeds, temperature, labels: as `Sampler.draw` takes them.
            given: None, or (codes (batch, h, w) int, keep (batch, h, w) bool): the codes to keep where `keep` is
                true; every other position is drawn given the codes before it, kept or drawn.
        """
        return self._draw(seeds, temperature, labels, _no_progress, given)

    @abc.abstractmethod
    def _draw(self, seeds, temperature, labels, advance: Callable[[int], None], given=None):
        """`Sampler._draw`, keeping `given` codes as `draw` takes them."""


class ReferenceSampler(InpaintingSampler):
    """For each position in raster order, the whole network on the whole map, then one draw. Slow and simple: the
    sampler the fast ones are tested against, for any autoregressive prior (its call gives logits (batch, h, w, K)).

    Args:
        prior: an `AutoregressivePrior`.
    """

    name = "reference"

    def _draw(self, seeds, temperature, labels, advance, given=None):
        h, w = self.prior.grid_shape
        uniforms = sample_uniforms(seeds, h * w)  # (batch, h * w)
        given = flat_given(given)
        codes = tf.zeros((len(seeds), h, w), tf.int32)
        for position in range(h * w):
            row, column = divmod(position, w)
            logits = self.prior(codes, labels, training=False)[:, row, column]  # (batch, K)
            codes = set_codes(codes, position, draw_or_keep(logits, temperature, uniforms, given, position))
            advance(1)
        return codes


class CachingSampler(InpaintingSampler):
    """An inpainting sampler that draws a whole batch in one graph function, position by position, from caches of
    what the prior computed at the positions before; subclasses implement `_fill`. An exported SavedModel carries
    that graph function as it is.

    Args:
        prior: as `InpaintingSampler`'s.
    """

    name = "cached"

    def __init__(self, prior: keras.Model):
        super().__init__(prior)
        self._draw_graph = tf.function(self._draw_batch)

    def _draw(self, seeds, temperature, labels, advance, given=None):
        codes = self._draw_graph(seeds, temperature, labels, given)
        advance(math.prod(self.prior.grid_shape))
        return codes

    def _draw_batch(self, seeds, temperature, labels, given):
        """The graph function's body: `_fill` with each map's uniform numbers and `given` flattened."""
        size = seeds.shape[0] or tf.shape(seeds)[0]  # known when traced for one batch size, else only when run
        uniforms = sample_uniforms(seeds, math.prod(self.prior.grid_shape))  # (batch, h * w)
        return self._fill(uniforms, temperature, labels, flat_given(given), size)

    @abc.abstractmethod
    def _fill(self, uniforms, temperature, labels, given, size):
        """Codes (batch, h, w) int32 drawn in raster order, the code at position p with `draw_or_keep(logits,
        temperature, uniforms, given, p)`.

        Args:
            uniforms: (batch, h * w) float32, each map's uniform numbers.
            temperature: a float scalar.
            labels: (batch,) int32, or None.
            given: as `flat_given` gives it, or None.
            size: the batch size: an int when the graph is traced for one, else a scalar int32 tensor.
        """


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
