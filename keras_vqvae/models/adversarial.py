"""The decoder's adversarial term (VQGAN, Esser et al. 2021, section 3.1): a patch discriminator that tells real
slices from decoded ones, so that the decoder renders sharp, plausible tissue where a pixel loss alone would answer
its uncertainty with a blurred average.

* `PatchDiscriminator` (Isola et al. 2017, "PatchGAN"): one real-or-decoded logit per overlapping patch.
* `hinge_losses`: the hinge objective of the discriminator and the decoder (Lim & Ye 2017; VQGAN's choice).
* `adaptive_weight`: VQGAN's eq. 7, the ratio of the reconstruction and adversarial gradients at the decoder's last
  layer, which balances the two terms whatever their scales.
* `AdversarialVQVAE`: the `VQVAE` that trains its decoder with the term and the discriminator beside it.

References:
    P. Esser, R. Rombach, B. Ommer, "Taming Transformers for High-Resolution Image Synthesis", CVPR 2021.
    P. Isola, J.-Y. Zhu, T. Zhou, A. A. Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
    CVPR 2017.
    J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894, 2017.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from keras_vqvae.models.optimization import minimize
from keras_vqvae.models.vqvae import VQVAE

NORMALIZATION_GROUPS = 8  # of the discriminator's group normalisation (or their greatest common divisor with
# the channels, when 8 does not divide them)
ADAPTIVE_WEIGHT_EPSILON = 1e-4  # VQGAN's delta in eq. 7
ADAPTIVE_WEIGHT_LIMIT = 1e4  # and the clip of its result


@keras.saving.register_keras_serializable(package="keras_vqvae")
class PatchDiscriminator(keras.Model):
    """Real-or-decoded logits for overlapping patches of a slice.

    images (batch, H, W, C) in [-0.5, 0.5] -> `stages` x [4x4 convolution, stride 2, channels F, 2F, 4F...,
    group normalisation from the second on (8 groups, or the greatest common divisor of 8 and the channels),
    LeakyReLU 0.2] -> 3x3 convolution -> logits (batch, H / 2^stages,
    W / 2^stages, 1), each seeing a patch of about 2^(stages + 2) pixels. Group normalisation rather than batch
    normalisation: real and decoded slices pass in separate batches, whose statistics would tell them apart.

    Args:
        filters: F, channels of the first stage. Default 32.
        stages: strided stages. Default 3 (patches of about 30 pixels at 128x128).
        image_channels: channels of the images. Default 1.
    """

    def __init__(self, filters: int = 32, stages: int = 3, image_channels: int = 1, **kwargs):
        kwargs.setdefault("name", "patch_discriminator")
        super().__init__(**kwargs)
        if filters < 1 or stages < 1:
            raise ValueError(f"need filters >= 1 and stages >= 1, got {filters}, {stages}")
        self.filters, self.stages, self.image_channels = filters, stages, image_channels
        self.blocks = []
        for i in range(stages):
            block = [layers.Conv2D(filters * 2 ** i, 4, strides=2, padding="same", name=f"down{i}")]
            if i > 0:
                groups = math.gcd(NORMALIZATION_GROUPS, filters * 2 ** i)  # groups must divide the channels
                block.append(layers.GroupNormalization(groups=groups, name=f"norm{i}"))
            block.append(layers.LeakyReLU(0.2))
            self.blocks.append(block)
        self.to_logits = layers.Conv2D(1, 3, padding="same", dtype="float32", name="to_logits")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            for layer in block:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.to_logits.build(shape)
        self.built = True

    def features(self, images, training=None) -> list:
        """Each stage's output, (batch, H / 2^s, W / 2^s, F 2^(s-1)) for s = 1..stages, then the logits: the
        features a feature-matching loss compares (docs/generation-experiments.md measured one)."""
        x, outputs = images, []
        for block in self.blocks:
            for layer in block:
                x = layer(x, training=training)
            outputs.append(x)
        return [*outputs, self.to_logits(x)]

    def call(self, images, training=None):
        """Logits (batch, H / 2^stages, W / 2^stages, 1): positive where a patch looks real."""
        return self.features(images, training)[-1]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stages": self.stages,
                "image_channels": self.image_channels}


def hinge_losses(real_logits, decoded_logits) -> tuple[tf.Tensor, tf.Tensor]:
    """(discriminator loss, decoder loss) of the hinge objective, each a scalar:

        L_D = mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))        L_G = -mean(D(x_hat))

    with D(.) the patch logits; the decoder's term is the one it minimises with `decoded_logits` not stopped."""
    real_logits, decoded_logits = tf.cast(real_logits, tf.float32), tf.cast(decoded_logits, tf.float32)
    discriminator_loss = (tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
                          + tf.reduce_mean(tf.nn.relu(1.0 + decoded_logits)))
    return discriminator_loss, -tf.reduce_mean(decoded_logits)


def adaptive_weight(reconstruction_gradient, adversarial_gradient) -> tf.Tensor:
    """VQGAN's eq. 7: lambda = ||grad_GL L_rec|| / (||grad_GL L_adv|| + delta), clipped to [0, 1e4] and not
    trained through, with the two gradients taken with respect to the decoder's last layer GL."""
    ratio = tf.norm(reconstruction_gradient) / (tf.norm(adversarial_gradient) + ADAPTIVE_WEIGHT_EPSILON)
    return tf.stop_gradient(tf.clip_by_value(ratio, 0.0, ADAPTIVE_WEIGHT_LIMIT))


@keras.saving.register_keras_serializable(package="keras_vqvae")
class AdversarialVQVAE(VQVAE):
    """A `VQVAE` whose decoder also learns to make slices a discriminator cannot tell from real ones (VQGAN, Esser et
    al. 2021, eq. 5), from training step `adversarial_start_step` on, once the reconstructions have nearly converged
    (before it the discriminator does not train either):

        loss = mean(error^2) / data_variance + vq_loss + adversarial_weight * L_G

    with L_G the decoder's hinge term (`hinge_losses`), while the discriminator, with its own optimizer, minimises L_D
    on the same batch.

    `adversarial_weight` is a fixed number, set by measurement: VQGAN's adaptive weight (eq. 7, the ratio of the
    reconstruction and adversarial gradients at the decoder's last layer) comes out below 1e-2 here once the
    reconstructions have nearly converged (docs/generation-experiments.md), too weak to change the decoder, so it
    is only logged, as `adaptive_weight`, beside the weight in use.

    Args:
        encoder: as `VQVAE`'s.
        quantizer: as `VQVAE`'s.
        decoder: as `VQVAE`'s.
        discriminator: real-or-decoded logits of images (batch, H, W, C), such as a `PatchDiscriminator`.
        adversarial_weight: the weight of L_G, positive (for no adversarial term, build a plain `VQVAE`).
        adversarial_start_step: the training step, counted from 0 by the optimizer's iterations, from which the
            term acts. Default 0.
        data_variance: as `VQVAE`'s. Default 1.0.

    `compile(optimizer, discriminator_optimizer)`: the first trains the encoder, quantizer and decoder, the second
    the discriminator; a `.keras` file keeps the state of both.

    Tracked metrics: `VQVAE`'s, and in training also `adversarial_loss` (L_G, whatever its weight and the step),
    `discriminator_loss` (L_D) and `adaptive_weight`.
    """

    _networks = (*VQVAE._networks, "discriminator")
    _tracked_losses = (*VQVAE._tracked_losses, "adversarial_loss", "discriminator_loss", "adaptive_weight")

    def __init__(self, encoder, quantizer, decoder, discriminator: keras.Model, adversarial_weight: float,
                 adversarial_start_step: int = 0, data_variance: float = 1.0, **kwargs):
        if not adversarial_weight > 0:
            raise ValueError(f"adversarial_weight must be positive, got {adversarial_weight}: for no adversarial "
                             f"term, build a plain VQVAE")
        if adversarial_start_step < 0:
            raise ValueError(f"adversarial_start_step must not be negative, got {adversarial_start_step}: give the "
                             f"training step (0 for the first) from which the adversarial term acts")
        super().__init__(encoder, quantizer, decoder, data_variance, **kwargs)
        self.discriminator = discriminator
        self.adversarial_weight, self.adversarial_start_step = float(adversarial_weight), int(adversarial_start_step)
        if not discriminator.built:
            discriminator.build(self.encoder.input.shape)

    @property
    def autoencoder_variables(self) -> list:
        """The trainable variables of the encoder, the quantizer and the decoder (not the discriminator's)."""
        return [*self.encoder.trainable_variables, *self.quantizer.trainable_variables,
                *self.decoder.trainable_variables]

    def train_step(self, data):
        images = keras.utils.unpack_x_y_sample_weight(data)[0]
        with tf.GradientTape(persistent=True) as tape:  # read by both optimizers and by eq. 7
            losses, reconstructions, indices = self._compute_losses(images, training=True)
            discriminator_loss = self._add_adversarial_losses(losses, images, reconstructions)
        minimize(self.optimizer, losses["loss"], self.autoencoder_variables, tape)
        minimize(self.discriminator_optimizer, discriminator_loss, self.discriminator.trainable_variables, tape)
        last_layer = self.decoder.get_layer("to_images").kernel  # VQGAN's G_L
        losses["adaptive_weight"] = adaptive_weight(tape.gradient(losses["reconstruction_loss"], last_layer),
                                                    tape.gradient(losses["adversarial_loss"], last_layer))
        del tape
        self._track(losses, indices)
        return self._training_logs()

    def _add_adversarial_losses(self, losses: dict, images, reconstructions):
        """Adds the decoder's adversarial term L_G to `losses` ('loss' gains it, weighted and only from step
        `adversarial_start_step` on) and returns the discriminator's loss L_D, zero before that step."""
        real_logits = self.discriminator(images, training=True)  # (batch, H / 2^n, W / 2^n, 1)
        decoded_logits = self.discriminator(tf.cast(reconstructions, images.dtype), training=True)
        discriminator_loss, adversarial_loss = hinge_losses(real_logits, decoded_logits)
        acting = tf.cast(self.optimizer.iterations >= self.adversarial_start_step, tf.float32)
        losses["loss"] += acting * self.adversarial_weight * adversarial_loss
        losses["adversarial_loss"] = adversarial_loss
        losses["discriminator_loss"] = discriminator_loss
        return acting * discriminator_loss

    def compile(self, optimizer="adam", discriminator_optimizer="adam", **kwargs):
        """`optimizer` trains the encoder, quantizer and decoder, `discriminator_optimizer` the discriminator. Other
        arguments as `keras.Model.compile` (no loss: the VQ-VAE has its own)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = keras.optimizers.get(discriminator_optimizer)
        # Under float16 compile wraps `optimizer` in a LossScaleOptimizer: so is the discriminator's, once (one from
        # a .keras file is wrapped already).
        scaling = keras.optimizers.LossScaleOptimizer
        if isinstance(self.optimizer, scaling) and not isinstance(self.discriminator_optimizer, scaling):
            self.discriminator_optimizer = scaling(self.discriminator_optimizer)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {name: keras.optimizers.serialize(getattr(self, name))
                for name in ("optimizer", "discriminator_optimizer")}

    def compile_from_config(self, config):
        """Rebuilds both optimizers with their variables, so that a `.keras` file resumes training exactly."""
        self.compile(**{name: keras.optimizers.deserialize(config[name])
                        for name in ("optimizer", "discriminator_optimizer")})
        self.optimizer.build(self.autoencoder_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def get_config(self):
        return {**super().get_config(), "adversarial_weight": self.adversarial_weight,
                "adversarial_start_step": self.adversarial_start_step}
