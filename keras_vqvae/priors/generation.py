"""New slices: code maps drawn from a prior by its sampler, decoded by the VQ-VAE (codes -> prior -> sampler ->
decoder)."""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from keras_vqvae.models.vqvae import VQVAE, decode_images
from keras_vqvae.priors import make_sampler
from keras_vqvae.priors.autoregressive import ANY_POSITION


class Generation(NamedTuple):
    """What `generate` returns.

    Attributes:
        images: the new slices (n, H, W, 1) float32 in [0, 1].
        codes: their code maps (n, h, w) int32.
        positions: the slice position (n,) int32 each was drawn for (ANY_POSITION for any), or None for a prior
            without a condition.
    """

    images: np.ndarray
    codes: np.ndarray
    positions: np.ndarray | None


def generate(vqvae: VQVAE, prior: keras.Model, num_samples: int, seed: int = 0, temperature: float = 1.0,
             condition: int | None = None, sampler: str | None = None, batch_size: int = 8,
             verbose: int = 0) -> Generation:
    """New slices from a prior over the VQ-VAE's code maps: its sampler draws code maps, the VQ-VAE decodes them.

    Args:
        vqvae: the trained VQ-VAE.
        prior: a trained prior over its code maps (a `GatedPixelCNN`, `CodeTransformer` or `LatentDCGAN`).
        num_samples: how many slices.
        seed: 0 <= seed < 2**31; the same seed gives the same slices, whatever the batch size.
        temperature: below 1 favours likely codes, above 1 flattens their distribution (the DCGAN: its noise's
            scale).
        condition: the slice position of every slice, for a prior conditioned on positions, or ANY_POSITION (-1)
            for any (a prior trained with a null class); None spreads a conditional prior's slices evenly over the
            positions it knows, from the lowest to the highest.
        sampler: the name of the prior's sampler (see `make_sampler`); None: its kind's default, e.g. 'cached' for
            a PixelCNN. A prior's samplers all draw the same codes.
        batch_size: maps drawn together (a matter of speed and memory only).
        verbose: progress as keras.utils.Progbar's: 0 none, 1 a bar, 2 a line at the end.

    Returns:
        A `Generation`: images (num_samples, H, W, 1) in [0, 1], codes (num_samples, h, w) and the positions
        (num_samples,) they were drawn for (None for an unconditional prior).
    """
    drawing = make_sampler(sampler, prior)
    codes = drawing.sample(num_samples, seed, temperature, batch_size, condition, verbose)
    labels = drawing.labels(num_samples, condition)  # the ones `sample` drew for: the null class is any position
    labels = None if labels is None else keras.ops.convert_to_numpy(labels)
    positions = None if labels is None else np.where(labels == drawing.num_classes, ANY_POSITION, labels)
    return Generation(decode_images(vqvae, codes), codes, positions)
