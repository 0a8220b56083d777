"""New slices: code maps drawn from a prior by its sampler, decoded by the VQ-VAE (codes -> prior -> sampler ->
decoder)."""

from __future__ import annotations

import keras
import numpy as np

from keras_vqvae.models.vqvae import VQVAE, decode_images
from keras_vqvae.priors import make_sampler


def generate(vqvae: VQVAE, prior: keras.Model, num_samples: int, seed: int = 0, temperature: float = 1.0,
             condition: int | None = None, sampler: str | None = None, batch_size: int = 8,
             verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """New slices (num_samples, H, W, 1) in [0, 1] and their code maps (num_samples, h, w).

    The prior's `sampler` (default: its kind's default, e.g. 'cached' for a PixelCNN; see `make_sampler`) draws the
    code maps, `batch_size` at a time; the same seed gives the same slices whatever the batch size. A conditional
    prior asked for no particular `condition` spreads its slices evenly over the slice positions it knows. The
    VQ-VAE decodes them.
    """
    codes = make_sampler(sampler, prior).sample(num_samples, seed, temperature, batch_size, condition, verbose)
    return decode_images(vqvae, codes), codes
