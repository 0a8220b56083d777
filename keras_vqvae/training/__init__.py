"""Training runs: the configuration, building models from it, resumable fitting, the run folder and the pipeline
that trains the VQ-VAE and then a prior into one."""

from keras_vqvae.priors.settings import DCGANSettings, PixelCNNSettings, TransformerSettings
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.pipeline import train
from keras_vqvae.training.run_folder import RunFolder

__all__ = ["TrainConfig", "PixelCNNSettings", "TransformerSettings", "DCGANSettings", "RunFolder", "train"]
