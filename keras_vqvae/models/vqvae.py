"""The VQ-VAE: encoder -> vector quantizer -> decoder, trained with `fit` through a custom `train_step`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.batching import apply_in_batches, slices_of
from keras_vqvae.metrics import codebook, image
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

    `compile` is Keras' own (an optimizer; no loss: the VQ-VAE has its own), and a `.keras` file keeps the
    optimizer's state, so that training resumes exactly. `AdversarialVQVAE` (`keras_vqvae.models.adversarial`) adds
    VQGAN's adversarial term.

    Tracked metrics: `loss`, `reconstruction_loss`, `vq_loss`, `perplexity`, `codebook_usage` (the last two over the
    whole epoch), and in evaluation `ssim`, `psnr` and `brain_ssim` (see `keras_vqvae.metrics.image`: the last two
    leave blank slices out) on images mapped back to [0, 1].

    Reference:
        A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
    """

    _networks = ("encoder", "quantizer", "decoder")  # the constructor's layers, serialised by `get_config`
    _tracked_losses = ("loss", "reconstruction_loss", "vq_loss")

    def __init__(self, encoder: Encoder, quantizer: VectorQuantizer, decoder: Decoder, data_variance: float = 1.0,
                 **kwargs):
        kwargs.setdefault("name", "vqvae")
        super().__init__(**kwargs)
        if data_variance <= 0:
            raise ValueError(f"data_variance must be positive, got {data_variance}: give the variance of the "
                             f"training pixels in [-0.5, 0.5] (keras_vqvae.pixel_variance), or leave the default 1.0")
        dims = {"the encoder's outputs": encoder.output.shape[-1], "the quantizer's codes": quantizer.embedding_dim,
                "the decoder's inputs": decoder.input.shape[-1]}
        if len(set(dims.values())) > 1:
            listed = ", ".join(f"{part} {dim}" for part, dim in dims.items())
            raise ValueError(f"the embedding dimensions differ ({listed}): give the encoder, the quantizer and the "
                             f"decoder the same embedding_dim")
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.data_variance = float(data_variance)
        if not self.quantizer.built:
            self.quantizer.build(self.encoder.output.shape)
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in self._tracked_losses}
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
        """The losses {'loss', 'reconstruction_loss', 'vq_loss'} (scalars), reconstructions (batch, H, W, C) and
        codes (batch, h, w) of images (batch, H, W, C)."""
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

    def _training_logs(self) -> dict:
        """What `train_step` returns: every metric but the image metrics, which only evaluation measures."""
        return step_logs(m for m in self.metrics if m not in self.image_metrics.values())

    def train_step(self, data):
        images = keras.utils.unpack_x_y_sample_weight(data)[0]
        with tf.GradientTape() as tape:
            losses, _, indices = self._compute_losses(images, training=True)
        minimize(self.optimizer, losses["loss"], self.trainable_variables, tape)
        self._track(losses, indices)
        return self._training_logs()

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

    def get_config(self):
        networks = {name: keras.saving.serialize_keras_object(getattr(self, name)) for name in self._networks}
        return {**super().get_config(), **networks, "data_variance": self.data_variance}

    @classmethod
    def from_config(cls, config):
        networks = {name: keras.saving.deserialize_keras_object(config[name]) for name in cls._networks}
        return cls(**{**config, **networks})


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
