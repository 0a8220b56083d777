"""Priors over the VQ-VAE's code maps, and the samplers that draw new maps from them.

codes -> prior -> sampler -> codes -> VQ-VAE decoder -> new images.
"""

from keras_vqvae.priors.pixelcnn import GatedBlock, GatedPixelCNN
from keras_vqvae.priors.sampling import (SAMPLERS, CachedSampler, CompiledSampler, ReferenceSampler, Sampler,
                                         make_sampler)

__all__ = ["GatedBlock", "GatedPixelCNN", "SAMPLERS", "Sampler", "ReferenceSampler", "CompiledSampler",
           "CachedSampler", "make_sampler"]
