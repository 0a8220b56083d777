"""Convolutional encoder and decoder with residual blocks (van den Oord et al. 2017, section 4.1).

The encoder maps images (batch, H, W, 1) to continuous latents z_e (batch, H/f, W/f, embedding_dim) with f the
downsampling factor, a power of two; the decoder maps (quantised) latents back to images. Both are functional Keras
models built at construction, so they can be used, summarised and saved on their own.
"""

from __future__ import annotations

import math

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="keras_vqvae")
class ResidualBlock(layers.Layer):
    """x + conv1x1(relu(conv3x3(relu(x)))): the residual block of the VQ-VAE paper.

    Args:
        filters: channels of the input and output.
        hidden_filters: channels of the 3x3 convolution. Default `filters // 2`.

    Input and output shape: (batch, height, width, filters).
    """

    def __init__(self, filters: int, hidden_filters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.hidden_filters = hidden_filters or max(1, filters // 2)
        self.conv3x3 = layers.Conv2D(self.hidden_filters, 3, padding="same", name="conv3x3")
        self.conv1x1 = layers.Conv2D(filters, 1, name="conv1x1")

    def build(self, input_shape):
        self.conv3x3.build(input_shape)
        self.conv1x1.build((*input_shape[:-1], self.hidden_filters))  # a tuple, or a list read back from a file

    def call(self, inputs):
        hidden = self.conv3x3(keras.ops.relu(inputs))
        return inputs + self.conv1x1(keras.ops.relu(hidden))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "hidden_filters": self.hidden_filters}


def _stage_filters(channels: int, downsampling: int) -> list[int]:
    """Channels after each of the log2(downsampling) strided stages, doubling up to `channels`."""
    stages = int(math.log2(downsampling))
    if downsampling < 2 or 2**stages != downsampling:
        raise ValueError(f"downsampling must be a power of two >= 2, got {downsampling}")
    return [max(channels // 2 ** (stages - 1 - i), 8) for i in range(stages)]


def _residual_stage(x, channels: int, residual_blocks: int):
    """The stage the encoder ends and the decoder starts with: a 3x3 convolution to `channels`, `residual_blocks`
    residual blocks, a ReLU (the layer names, conv and residualN, are those of every saved model)."""
    x = layers.Conv2D(channels, 3, padding="same", name="conv")(x)
    for i in range(residual_blocks):
        x = ResidualBlock(channels, name=f"residual{i}")(x)
    return layers.ReLU()(x)


class _ConvolutionalNetwork(keras.Model):
    """A functional model built from the constructor arguments of `Encoder` / `Decoder`, which it saves."""

    def __init__(self, inputs, outputs, *, embedding_dim, channels, residual_blocks, downsampling, image_channels,
                 **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.embedding_dim, self.channels, self.residual_blocks = embedding_dim, channels, residual_blocks
        self.downsampling, self.image_channels = downsampling, image_channels

    def get_config(self):
        return {"name": self.name, "embedding_dim": self.embedding_dim, "channels": self.channels,
                "residual_blocks": self.residual_blocks, "downsampling": self.downsampling,
                "image_channels": self.image_channels}


@keras.saving.register_keras_serializable(package="keras_vqvae")
class Encoder(_ConvolutionalNetwork):
    """Strided 4x4 convolutions, a 3x3 convolution, residual blocks and a linear 1x1 projection to z_e.

    Args:
        embedding_dim: channels of the output latents. Default 32.
        channels: channels of the last stage and of the residual blocks. Default 32.
        residual_blocks: number of residual blocks. Default 2.
        downsampling: spatial downsampling factor, a power of two (4: 256x256 -> 64x64). Default 4.
        image_channels: channels of the input images. Default 1.

    Input shape: (batch, H, W, image_channels) with H and W divisible by `downsampling`.
    Output shape: (batch, H / downsampling, W / downsampling, embedding_dim).
    """

    def __init__(self, embedding_dim: int = 32, channels: int = 32, residual_blocks: int = 2, downsampling: int = 4,
                 image_channels: int = 1, **kwargs):
        images = keras.Input((None, None, image_channels), name="images")
        x = images
        for i, filters in enumerate(_stage_filters(channels, downsampling)):
            x = layers.Conv2D(filters, 4, strides=2, padding="same", activation="relu", name=f"down{i}")(x)
        x = _residual_stage(x, channels, residual_blocks)
        latents = layers.Conv2D(embedding_dim, 1, name="to_latents")(x)  # z_e: linear, (batch, h, w, D)
        kwargs.setdefault("name", "encoder")
        super().__init__(images, latents, embedding_dim=embedding_dim, channels=channels,
                         residual_blocks=residual_blocks, downsampling=downsampling, image_channels=image_channels,
                         **kwargs)


@keras.saving.register_keras_serializable(package="keras_vqvae")
class Decoder(_ConvolutionalNetwork):
    """A 3x3 convolution, residual blocks, then strided 4x4 transposed convolutions to a linear image.

    Args:
        embedding_dim: channels of the input latents, the quantizer's code vectors. Default 32.
        channels: channels of the residual blocks; the transposed convolutions after them halve the channels stage
            by stage (at least 8). Default 32.
        residual_blocks: number of residual blocks. Default 2.
        downsampling: spatial upsampling factor, a power of two, matching the encoder. Default 4.
        image_channels: channels of the output images. Default 1.

    Input shape: (batch, h, w, embedding_dim). Output shape: (batch, h * downsampling, w * downsampling,
    image_channels), linear (no activation), in the data's range [-0.5, 0.5].
    """

    def __init__(self, embedding_dim: int = 32, channels: int = 32, residual_blocks: int = 2, downsampling: int = 4,
                 image_channels: int = 1, **kwargs):
        latents = keras.Input((None, None, embedding_dim), name="latents")
        x = _residual_stage(latents, channels, residual_blocks)
        stage_filters = _stage_filters(channels, downsampling)[::-1]
        for i, filters in enumerate(stage_filters[1:]):
            x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", activation="relu", name=f"up{i}")(x)
        images = layers.Conv2DTranspose(image_channels, 4, strides=2, padding="same", dtype="float32",
                                        name="to_images")(x)
        kwargs.setdefault("name", "decoder")
        super().__init__(latents, images, embedding_dim=embedding_dim, channels=channels,
                         residual_blocks=residual_blocks, downsampling=downsampling, image_channels=image_channels,
                         **kwargs)
