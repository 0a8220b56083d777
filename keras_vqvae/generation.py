"""New slices: code maps drawn from a prior, decoded by the VQ-VAE (codes -> prior -> sampler -> decoder)."""

from __future__ import annotations

import numpy as np

from keras_vqvae.priors import GatedPixelCNN, make_sampler
from keras_vqvae.priors.sampling import check_sampling_arguments
from keras_vqvae.vqvae import VQVAE

DECODING_BATCH_SIZE = 64


def generate(vqvae: VQVAE, prior: GatedPixelCNN, num_samples: int, seed: int = 0, temperature: float = 1.0,
             condition: int | None = None, sampler: str = "cached", batch_size: int = 8,
             verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """New slices (num_samples, H, W, 1) in [0, 1] and their code maps (num_samples, h, w).

    Code maps are drawn by `sampler` ('cached', 'compiled' or 'reference': the same codes, at different speeds) and
    decoded by the VQ-VAE. A conditional prior asked for no particular `condition` spreads its slices evenly over
    the slice positions it knows.
    """
    check_sampling_arguments(prior, num_samples, seed, temperature, batch_size, condition)
    draw = make_sampler(sampler, prior).sample
    if condition is not None or not prior.num_classes:
        codes = draw(num_samples, seed, temperature, batch_size, condition, verbose)
    else:
        positions = np.linspace(0, prior.num_classes - 1, num_samples).round().astype(int)
        codes = np.concatenate([draw(int(np.sum(positions == p)), seed, temperature, batch_size, int(p), verbose)
                                for p in np.unique(positions)])
    decoded = np.concatenate([vqvae.decode(codes[i:i + DECODING_BATCH_SIZE]).numpy()
                              for i in range(0, len(codes), DECODING_BATCH_SIZE)])
    return decoded + 0.5, codes
