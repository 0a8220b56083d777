"""Priors over the VQ-VAE's code maps, and the samplers that draw new maps from them.

codes -> prior -> sampler -> codes -> VQ-VAE decoder -> new images, with the prior a gated PixelCNN or a causal
transformer (each drawn position by position) or a DCGAN (a whole latent map at once, snapped onto the codes). Each prior plugs in through a
`PriorKind` (see `keras_vqvae.priors.kind`), registered here, once.
"""

from __future__ import annotations

import keras

from keras_vqvae.errors import InputError
from keras_vqvae.priors.dcgan import SNAPPING, LatentDCGAN
from keras_vqvae.priors.dcgan_sampling import DCGAN, DiversityMonitor, NoiseSampler
from keras_vqvae.priors.kind import PriorContext, PriorKind
from keras_vqvae.priors.pixelcnn import GatedBlock, GatedPixelCNN
from keras_vqvae.priors.pixelcnn_sampling import PIXELCNN, CachedSampler, CompiledSampler
from keras_vqvae.priors.sampler import CachingSampler, InpaintingSampler, ReferenceSampler, Sampler
from keras_vqvae.priors.transformer import TRANSFORMER, CachedTransformerSampler, CodeTransformer

PRIOR_KINDS: dict[str, PriorKind] = {kind.name: kind for kind in (PIXELCNN, TRANSFORMER, DCGAN)}  # one per prior


def kind_of(prior: keras.Model) -> PriorKind:
    """The registered kind of a trained prior: the one whose `build` makes models of its class."""
    for kind in PRIOR_KINDS.values():
        if isinstance(prior, kind.model_class):
            return kind
    raise TypeError(f"{type(prior).__name__} is not a registered prior: use one of "
                    f"{', '.join(kind.model_class.__name__ for kind in PRIOR_KINDS.values())}")


def make_sampler(name: str | None, prior: keras.Model) -> Sampler:
    """A sampler of a trained prior.

    Args:
        name: the sampler's name ('reference', 'compiled', 'cached' for a PixelCNN; 'reference', 'cached' for a
            transformer; 'noise' for a DCGAN), or None for its kind's default, the fastest.
        prior: the trained prior.

    Returns:
        The `Sampler`; an InputError names the samplers of the prior when `name` is none of them.
    """
    kind = kind_of(prior)
    samplers = {sampler.name: sampler for sampler in kind.samplers}
    if name is None:
        name = kind.default_sampler
    if name not in samplers:
        raise InputError(f"unknown sampler {name!r}: choose one of {', '.join(samplers)}")
    return samplers[name](prior)


__all__ = ["PRIOR_KINDS", "PriorKind", "PriorContext", "kind_of", "make_sampler",
           "Sampler", "InpaintingSampler", "CachingSampler",
           "GatedBlock", "GatedPixelCNN", "ReferenceSampler", "CompiledSampler", "CachedSampler",
           "CodeTransformer", "CachedTransformerSampler",
           "LatentDCGAN", "NoiseSampler", "DiversityMonitor", "SNAPPING"]
