"""Models and their optimizers built from a run's configuration: the VQ-VAE here, each prior by its kind's
`build` (see `keras_vqvae.priors.kind`)."""

from __future__ import annotations

import keras

from keras_vqvae.models.adversarial import AdversarialVQVAE, PatchDiscriminator
from keras_vqvae.models.networks import Decoder, Encoder
from keras_vqvae.models.optimization import cosine_adam
from keras_vqvae.models.quantizer import VectorQuantizer
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PriorContext, PriorKind
from keras_vqvae.training.config import TrainConfig

DISCRIMINATOR_BETAS = (0.5, 0.9)  # Adam's moment decays for the discriminator, as VQGAN trains its own


def build_vqvae(config: TrainConfig, data_variance: float, steps_per_epoch: int) -> VQVAE:
    """The VQ-VAE and its optimizer (Adam on a cosine schedule) as `config` describes them: a plain `VQVAE`, or with
    an adversarial weight an `AdversarialVQVAE`, whose term acts after `adversarial_start_epoch` epochs of
    `steps_per_epoch` steps and whose discriminator has its own Adam."""
    codebook_by_loss = {"ema_decay": None} if config.codebook_update == "loss" else {}  # else the EMA default
    networks = (Encoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling),
                VectorQuantizer(config.num_embeddings, config.embedding_dim, beta=config.beta,
                                dead_code_steps=config.dead_code_steps, **codebook_by_loss),
                Decoder(config.embedding_dim, config.channels, config.residual_blocks, config.downsampling))
    optimizer = cosine_adam(config.learning_rate, config.epochs, steps_per_epoch)
    if config.adversarial_weight == 0:
        model = VQVAE(*networks, data_variance=data_variance)
        model.compile(optimizer=optimizer)
        return model
    model = AdversarialVQVAE(*networks, PatchDiscriminator(config.discriminator_filters),
                             adversarial_weight=config.adversarial_weight,
                             adversarial_start_step=config.adversarial_start_epoch * steps_per_epoch,
                             data_variance=data_variance)
    model.compile(optimizer=optimizer, discriminator_optimizer=keras.optimizers.Adam(
        config.discriminator_learning_rate, beta_1=DISCRIMINATOR_BETAS[0], beta_2=DISCRIMINATOR_BETAS[1]))
    return model


def build_prior(config: TrainConfig, kind: PriorKind, context: PriorContext):
    """The prior of `kind` and its optimizer(s), with the settings `config` holds for it."""
    return kind.build(getattr(config, kind.name), context)
