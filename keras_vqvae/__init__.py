"""keras_vqvae: a VQ-VAE that learns a discrete code of brain MRI slices, in TensorFlow / Keras 3.

Pipeline: data -> Encoder -> VectorQuantizer -> Decoder, trained as one `VQVAE` model with `fit` (or as an
`AdversarialVQVAE`, whose decoder also learns against a `PatchDiscriminator`); then
codes -> prior (GatedPixelCNN, CodeTransformer or LatentDCGAN) -> its sampler -> Decoder, for new slices; and
slices -> codes -> the prior's likelihood of each code -> healed slices -> `anomaly_maps`. A whole run is
`keras_vqvae.training.train(TrainConfig(...))` (the function is not exported here, where `keras_vqvae.train` is the
command's module); `export_run` writes its SavedModel.
"""

from keras_vqvae import startup

if startup.launched_as_command():  # python -m keras_vqvae...: before anything imports TensorFlow
    startup.load_tensorflow_quietly()

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"keras_vqvae needs Keras' TensorFlow backend, but KERAS_BACKEND is "
                      f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before importing it")

from keras_vqvae.anomaly import AnomalyDetector, AnomalyMaps, AnomalySettings, anomaly_maps  # noqa: E402
from keras_vqvae.anomaly_masks import MaskSettings, anomaly_masks, calibrate_mask_threshold  # noqa: E402
from keras_vqvae.calibration import calibrate_threshold  # noqa: E402
from keras_vqvae.data import (load_slices, make_code_dataset, make_dataset, pixel_variance, read_folder,  # noqa: E402
                              read_images, synthetic_slices)
from keras_vqvae.errors import InputError  # noqa: E402
from keras_vqvae.metrics.codebook import CodebookUsage, Perplexity  # noqa: E402
from keras_vqvae.metrics.generation import (diversity_ms_ssim, generation_metrics, pairwise_ms_ssim,  # noqa: E402
                                            pairwise_ssim)
from keras_vqvae.metrics.image import brain_ssim, psnr, ssim  # noqa: E402
from keras_vqvae.models.adversarial import AdversarialVQVAE, PatchDiscriminator  # noqa: E402
from keras_vqvae.models.networks import Decoder, Encoder, ResidualBlock  # noqa: E402
from keras_vqvae.models.quantizer import VectorQuantizer  # noqa: E402
from keras_vqvae.models.vqvae import VQVAE  # noqa: E402
from keras_vqvae.priors import (CachedSampler, CachedTransformerSampler, CodeTransformer,  # noqa: E402
                                CompiledSampler, DiversityMonitor, GatedPixelCNN, LatentDCGAN, NoiseSampler,
                                ReferenceSampler, Sampler, make_sampler)
from keras_vqvae.priors.generation import Generation, generate  # noqa: E402
from keras_vqvae.savedmodel import export_run  # noqa: E402
from keras_vqvae.training.config import TrainConfig  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "VectorQuantizer", "Encoder", "Decoder", "ResidualBlock", "VQVAE", "AdversarialVQVAE", "PatchDiscriminator",
    "GatedPixelCNN", "CodeTransformer", "LatentDCGAN", "Sampler", "ReferenceSampler", "CompiledSampler",
    "CachedSampler", "CachedTransformerSampler", "NoiseSampler", "make_sampler",
    "generate", "Generation", "DiversityMonitor",
    "anomaly_maps", "AnomalyDetector", "AnomalyMaps", "AnomalySettings", "calibrate_threshold",
    "anomaly_masks", "MaskSettings", "calibrate_mask_threshold",
    "TrainConfig", "export_run",
    "load_slices", "read_folder", "read_images", "synthetic_slices", "make_dataset", "make_code_dataset",
    "pixel_variance",
    "ssim", "psnr", "brain_ssim", "pairwise_ssim", "pairwise_ms_ssim", "diversity_ms_ssim",
    "generation_metrics",
    "CodebookUsage", "Perplexity", "InputError",
]
