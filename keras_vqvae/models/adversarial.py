"""The decoder's adversarial term (VQGAN, Esser et al. 2021, section 3.1): a patch discriminator that tells real
slices from decoded ones, so that the decoder renders sharp, plausible tissue where a pixel loss alone would answer
its uncertainty with a blurred average.

* `PatchDiscriminator` (Isola et al. 2017, "PatchGAN"): one real-or-decoded logit per overlapping patch.
* `hinge_losses`: the hinge objective of the discriminator and the decoder (Lim & Ye 2017; VQGAN's choice).
* `adaptive_weight`: VQGAN's eq. 7, the ratio of the reconstruction and adversarial gradients at the decoder's last
  layer, which balances the two terms whatever their scales.

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
