"""Priors over the VQ-VAE's code maps, and the samplers that draw new maps from them.

codes -> prior -> sampler -> codes -> VQ-VAE decoder -> new images, with the prior a gated PixelCNN (drawn position
by position by a sampler) or a DCGAN (a whole latent map at once, snapped onto the codes).
"""

from keras_vqvae.priors.dcgan import SNAPPING, LatentDCGAN
from keras_vqvae.priors.pixelcnn import GatedBlock, GatedPixelCNN
from keras_vqvae.priors.sampling import (SAMPLERS, CachedSampler, CompiledSampler, ReferenceSampler, Sampler,
                                         make_sampler)

__all__ = ["GatedBlock", "GatedPixelCNN", "LatentDCGAN", "SNAPPING", "SAMPLERS", "Sampler", "ReferenceSampler",
           "CompiledSampler", "CachedSampler", "make_sampler"]
