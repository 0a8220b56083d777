"""The VQ-VAE: encoder -> vector quantizer -> decoder, trained with `fit` through a custom `train_step`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.batching import apply_in_batches, slices_of
from keras_vqvae.metrics import codebook, image
from keras_vqvae.models.adversarial import PatchDiscriminator, adaptive_weight, hinge_losses
from keras_vqvae.models.networks import Decoder, Encoder
from keras_vqvae.models.optimization import minimize, step_logs
from keras_vqvae.models.quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="keras_vqvae")
class VQVAE(keras.Model):
    """Vector-quantised variational autoencoder for images in [-0.5, 0.5].

    Training minimises (paper eq. 3, with the reconstruction term as a mean squared error scaled by the data's
    variance so that it is about 1 for a model that predicts the mean image):

        loss = mean(error^2) / data_variance + vq_loss

        error = 0        where x = -0.5 and x_hat < x, or x = 0.5 and x_hat > x
              = x_hat - x  elsewhere

    that is, the error of the image the user gets, whose values are clipped to [-0.5, 0.5]: a reconstruction darker
    than black where the original is black is black (see `_error_in_range`). `decode` and `reconstruct` clip.

    Args:
        encoder: maps images (batch, H, W, C) to latents z_e (batch, h, w, D).
        quantizer: a `VectorQuantizer` with embedding_dim D.
        decoder: maps quantised latents (batch, h, w, D) to images (batch, H, W, C).
        data_variance: variance of the training pixels in [-0.5, 0.5]. Default 1.0.
        discriminator: a `PatchDiscriminator` for the adversarial term, or None (the default) for none.
        adversarial_weight: the weight of the decoder's adversarial term. Default 0.1.
        adversarial_start: the training step from which the adversarial term acts. Default 0.

    With a `discriminator` (a `PatchDiscriminator`, see `keras_vqvae.models.adversarial`), the decoder also learns to
    make slices it cannot tell from real ones (VQGAN, Esser et al. 2021, eq. 5), from training step
    `adversarial_start` on, when the reconstructions have nearly converged (before it, the discriminator does not
    train either):

        loss = mean(error^2) / data_variance + vq_loss + adversarial_weight * L_G

    with L_G the decoder's hinge term (`hinge_losses`), while the discriminator, with its own optimizer (`compile`'s
    `discriminator_optimizer`), minimises L_D on the same batch.

    `adversarial_weight` is a fixed number, set by measurement: VQGAN's adaptive weight (eq. 7, the ratio of the
    reconstruction and adversarial gradients at the decoder's last layer) comes out below 1e-2 here once the
    reconstructions have nearly converged (docs/generation-experiments.md), too weak to change the decoder, so it
    is only logged, as `adaptive_weight`, beside the weight in use.

    Tracked metrics: `loss`, `reconstruction_loss`, `vq_loss`, `perplexity`, `codebook_usage` (the last two over the
    whole epoch), in training with a discriminator also `adversarial_loss` (L_G, whatever its weight),
    `discriminator_loss` (L_D) and `adaptive_weight`, and in evaluation `ssim`, `psnr` and `brain_ssim` (see
    `keras_vqvae.metrics.image`: the last two leave blank slices out) on images mapped back to [0, 1].

    Reference:
        A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
    """

    def __init__(self, encoder: Encoder, quantizer: VectorQuantizer, decoder: Decoder, data_variance: float = 1.0,
                 discriminator: PatchDiscriminator | None = None, adversarial_weight: float = 0.1,
                 adversarial_start: int = 0, **kwargs):
        kwargs.setdefault("name", "vqvae")
        super().__init__(**kwargs)
        if data_variance <= 0:
            raise ValueError(f"data_variance must be positive, got {data_variance}")
        if adversarial_weight < 0 or adversarial_start < 0:
            raise ValueError(f"adversarial_weight and adversarial_start must not be negative, got "
                             f"{adversarial_weight}, {adversarial_start}")
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.data_variance = float(data_variance)
        self.discriminator = discriminator
        self.adversarial_weight, self.adversarial_start = float(adversarial_weight), int(adversarial_start)
        if not self.quantizer.built:
            self.quantizer.build(self.encoder.output.shape)
        if discriminator is not None and not discriminator.built:
            discriminator.build(self.encoder.input.shape)
        losses = ("loss", "reconstruction_loss", "vq_loss")
        if discriminator is not None:
            losses += ("adversarial_loss", "discriminator_loss", "adaptive_weight")
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in losses}
        self.code_metrics = [codebook.CodebookUsage(quantizer.num_embeddings),
                             codebook.Perplexity(quantizer.num_embeddings)]
        self.image_metrics = {name: keras.metrics.Mean(name=name) for name in ("ssim", "psnr", "brain_ssim")}
        self.built = True

    @property
    def metrics(self):
        return [*self.loss_trackers.values(), *self.code_metrics, *self.image_metrics.values()]

    def call(self, images, training=None):
        """Reconstructions (batch, H, W, C) of images (batch, H, W, C)."""
        return self._autoencode(images, training)[0]

    def _autoencode(self, images, training):
        """Reconstructions (batch, H, W, C), codes (batch, h, w) and the VQ loss of images (batch, H, W, C)."""
        latents = self.encoder(images, training=training)  # z_e: (batch, h, w, D)
        quantized, indices = self.quantizer(latents, training=training)  # (batch, h, w, D), (batch, h, w)
        vq_loss = self.quantizer.vq_loss(latents, quantized, indices)  # from this replica's own tensors
        return self.decoder(quantized, training=training), indices, vq_loss

    def encode(self, images):
        """Code indices (batch, h, w) int32 of images (batch, H, W, C) in [-0.5, 0.5]."""
        return self.quantizer.nearest_indices(self.encoder(images, training=False))

    def decode(self, indices):
        """Images (batch, H, W, C) in [-0.5, 0.5] decoded from code indices (batch, h, w)."""
        return _clip_to_range(self.decoder(self.quantizer.lookup(indices), training=False))

    def reconstruct(self, images):
        """Reconstructions (batch, H, W, C) in [-0.5, 0.5] of images (batch, H, W, C), without training updates."""
        return _clip_to_range(self(images, training=False))

    def _compute_losses(self, images, training):
        reconstructions, indices, vq_loss = self._autoencode(images, training)
        reconstruction_loss = tf.reduce_mean(tf.square(_error_in_range(images, reconstructions)))
        reconstruction_loss /= self.data_variance
        losses = {"loss": reconstruction_loss + vq_loss, "reconstruction_loss": reconstruction_loss,
                  "vq_loss": vq_loss}
        return losses, reconstructions, indices

    def _track(self, losses, indices):
        for name, value in losses.items():
            self.loss_trackers[name].update_state(value)
        for metric in self.code_metrics:
            metric.update_state(indices)

    @property
    def autoencoder_variables(self) -> list:
        """The trainable variables of the encoder, the quantizer and the decoder (not the discriminator's)."""
        return [*self.encoder.trainable_variables, *self.quantizer.trainable_variables,
                *self.decoder.trainable_variables]

    def train_step(self, data):
        images = keras.utils.unpack_x_y_sample_weight(data)[0]
        with tf.GradientTape(persistent=self.discriminator is not None) as tape:
            losses, reconstructions, indices = self._compute_losses(images, training=True)
            if self.discriminator is not None:
                discriminator_loss = self._add_adversarial_losses(losses, images, reconstructions)
        minimize(self.optimizer, losses["loss"], self.autoencoder_variables, tape)
        if self.discriminator is not None:
            minimize(self.discriminator_optimizer, discriminator_loss, self.discriminator.trainable_variables, tape)
            last_layer = self.decoder.get_layer("to_images").kernel  # VQGAN's G_L
            losses["adaptive_weight"] = adaptive_weight(tape.gradient(losses["reconstruction_loss"], last_layer),
                                                        tape.gradient(losses["adversarial_loss"], last_layer))
            del tape
        self._track(losses, indices)
        return step_logs(m for m in self.metrics if m not in self.image_metrics.values())

    def _add_adversarial_losses(self, losses: dict, images, reconstructions):
        """Adds the decoder's adversarial term L_G to `losses` ('loss' gains it, weighted and only from step
        `adversarial_start` on) and returns the discriminator's loss L_D, zero before that step."""
        real_logits = self.discriminator(images, training=True)  # (batch, H / 2^n, W / 2^n, 1)
        decoded_logits = self.discriminator(tf.cast(reconstructions, images.dtype), training=True)
        discriminator_loss, adversarial_loss = hinge_losses(real_logits, decoded_logits)
        acting = tf.cast(self.optimizer.iterations >= self.adversarial_start, tf.float32)
        losses["loss"] += acting * self.adversarial_weight * adversarial_loss
        losses["adversarial_loss"] = adversarial_loss
        losses["discriminator_loss"] = discriminator_loss
        return acting * discriminator_loss

    def test_step(self, data):
        images = keras.utils.unpack_x_y_sample_weight(data)[0]
        losses, reconstructions, indices = self._compute_losses(images, training=False)
        self._track(losses, indices)
        originals = images + 0.5  # (batch, H, W, C) in [0, 1]
        reconstructed = _clip_to_range(tf.cast(reconstructions, images.dtype)) + 0.5
        ssim, brain_ssim, has_brain = image.ssim_scores(originals, reconstructed)
        self.image_metrics["ssim"].update_state(ssim)
        self.image_metrics["brain_ssim"].update_state(brain_ssim, sample_weight=has_brain)
        psnr, counted = image.psnr(originals, reconstructed)  # blank slices are not counted
        self.image_metrics["psnr"].update_state(psnr, sample_weight=counted)
        return step_logs(self.metrics)

    def compile(self, optimizer="adam", discriminator_optimizer="adam", **kwargs):
        """`optimizer` trains the encoder, quantizer and decoder; `discriminator_optimizer` the discriminator, when
        there is one. Other arguments as `keras.Model.compile` (no loss: the VQ-VAE has its own)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = None
        if self.discriminator is not None:
            self.discriminator_optimizer = keras.optimizers.get(discriminator_optimizer)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):  # float16, as compile wraps its own
                self.discriminator_optimizer = keras.optimizers.LossScaleOptimizer(self.discriminator_optimizer)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        optimizers = {"optimizer": self.optimizer, "discriminator_optimizer": self.discriminator_optimizer}
        return {name: keras.optimizers.serialize(value) for name, value in optimizers.items() if value is not None}

    def compile_from_config(self, config):
        """Rebuilds the optimizers with their variables, so that a `.keras` file resumes training exactly. (Files
        written before the discriminator existed hold Keras' own compile configuration, whose other entries are
        empty.)"""
        self.compile(**{name: keras.optimizers.deserialize(config[name])
                        for name in ("optimizer", "discriminator_optimizer") if config.get(name) is not None})
        self.optimizer.build(self.autoencoder_variables)
        if self.discriminator is not None:
            self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def get_config(self):
        config = {**super().get_config(), "data_variance": self.data_variance,
                  "encoder": keras.saving.serialize_keras_object(self.encoder),
                  "quantizer": keras.saving.serialize_keras_object(self.quantizer),
                  "decoder": keras.saving.serialize_keras_object(self.decoder)}
        if self.discriminator is not None:
            config.update(discriminator=keras.saving.serialize_keras_object(self.discriminator),
                          adversarial_weight=self.adversarial_weight, adversarial_start=self.adversarial_start)
        return config

    @classmethod
    def from_config(cls, config):
        parts = {key: keras.saving.deserialize_keras_object(config.pop(key))
                 for key in ("encoder", "quantizer", "decoder", "discriminator") if key in config}
        return cls(**parts, **config)


DECODING_BATCH_SIZE = 64


def decode_images(vqvae: VQVAE, codes) -> np.ndarray:
    """Slices (n, H, W, 1) in [0, 1] that the VQ-VAE decodes from code maps (n, h, w), through one compiled
    function, DECODING_BATCH_SIZE maps at a time."""
    return apply_in_batches(vqvae.decode, slices_of(np.asarray(codes), DECODING_BATCH_SIZE)) + 0.5


def _clip_to_range(images):
    """Decoder outputs to the data range [-0.5, 0.5]."""
    return tf.clip_by_value(images, -0.5, 0.5)


def _error_in_range(images, reconstructions):
    """Reconstruction error of the image the user gets, whose values are clipped to the data range [-0.5, 0.5].

    Where the original sits at the edge of the range (the black background of a slice) and the reconstruction goes
    beyond it, the clipped image is exact, so the error is zero; everywhere else it is the plain difference. Under
    plain MSE the background settles around black with noise on both sides, and the half above black survives
    clipping as a grey haze that SSIM punishes hard; this lets the decoder put the background anywhere below black.
    """
    reconstructions = tf.cast(reconstructions, images.dtype)
    beyond = ((images <= -0.5) & (reconstructions < images)) | ((images >= 0.5) & (reconstructions > images))
    return tf.where(beyond, tf.zeros_like(images), reconstructions - images)
