"""Gated PixelCNN prior over maps of code indices (van den Oord et al. 2016), trained with `fit`.

The prior models p(codes) = prod_p p(code_p | codes before p) in raster order (paper eq. 1) over the (h, w) maps of
code indices that a trained VQ-VAE's encoder produces; sampling it and decoding the codes makes new images.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_vqvae.priors.autoregressive import UNCONDITIONAL_RATE, AutoregressivePrior


def _gate(preactivation):
    """tanh(a) * sigmoid(b) of the two halves of the last axis: (..., 2F) -> (..., F) (paper eq. 2)."""
    a, b = tf.split(preactivation, 2, axis=-1)
    return tf.tanh(a) * tf.sigmoid(b)


def _shift_down(maps):
    """(batch, h, w, F) -> the same maps moved down one row, zeros in the first: row i holds row i - 1."""
    return tf.pad(maps, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def _shift_right(maps):
    """(batch, h, w, F) -> the same maps moved right one column, zeros in the first: column j holds column j - 1."""
    return tf.pad(maps, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


@keras.saving.register_keras_serializable(package="keras_vqvae")
class GatedBlock(keras.layers.Layer):
    """One layer of the gated PixelCNN: a vertical and a horizontal stack with gated activations (paper section 2.2).

    The vertical stack at row i sees only rows above i; the horizontal stack at (i, j) sees the vertical stack there
    and the positions left of j in row i. Causality comes from padding on one side only ('valid' convolutions over
    inputs padded above, left and right / on the left), never from masks assigned into kernels:

        vertical:   v_pre = conv_{(n+1) x k}(v padded n rows above, n columns each side) + V_v * s
        horizontal: h_pre = conv_{1 x (n+1)}(h padded n columns left) + conv_1x1(v_pre) + V_h * s
        outputs:    v' = gate(v_pre),  h' = h + conv_1x1(gate(h_pre)),  skip = conv_1x1(gate(h_pre))

    with n = kernel_size // 2, gate(a, b) = tanh(a) * sigmoid(b) (eq. 2) and s an optional condition map, a feature
    vector per position that does not depend on the codes (eq. 5, with V_v and V_h 1 x 1 convolutions). Given
    vertical inputs that depend on rows above only and horizontal inputs that depend on positions before (i, j) only,
    the outputs keep those properties: stacking blocks leaves no blind spot.

    The two halves, `vertical_preactivation` and `horizontal_outputs`, also run on windows of a few rows or positions:
    that is how `CachedSampler` computes one new position with the same weights.

    Args:
        filters: F, channels of both stacks.
        kernel_size: k, an odd width of the vertical stack's kernel; the horizontal kernel is 1 x (k // 2 + 1).
        condition_channels: C, channels of the condition map s; 0 for an unconditional block. Default 0.

    Call arguments:
        vertical: (batch, h, w, F); horizontal: (batch, h, w, F); condition: (batch, h, w, C) or None.

    Returns:
        (vertical', horizontal', skip), each (batch, h, w, F).
    """

    def __init__(self, filters: int, kernel_size: int, condition_channels: int = 0, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {kernel_size}")
        self.filters, self.kernel_size, self.condition_channels = filters, kernel_size, condition_channels
        self.reach = kernel_size // 2  # n: rows above, and columns to each side, that one block adds to the view
        conv = keras.layers.Conv2D
        self.vertical_conv = conv(2 * filters, (self.reach + 1, kernel_size), name="vertical_conv")
        self.horizontal_conv = conv(2 * filters, (1, self.reach + 1), name="horizontal_conv")
        self.vertical_to_horizontal = conv(2 * filters, 1, name="vertical_to_horizontal")
        self.horizontal_output = conv(filters, 1, name="horizontal_output")
        self.skip_output = conv(filters, 1, name="skip_output")
        if condition_channels:
            self.vertical_condition = conv(2 * filters, 1, use_bias=False, name="vertical_condition")  # V_v
            self.horizontal_condition = conv(2 * filters, 1, use_bias=False, name="horizontal_condition")  # V_h
        else:
            self.vertical_condition = self.horizontal_condition = None

    def build(self, input_shape=None):
        f = self.filters
        self.vertical_conv.build((None, None, None, f))
        self.horizontal_conv.build((None, None, None, f))
        self.vertical_to_horizontal.build((None, None, None, 2 * f))
        self.horizontal_output.build((None, None, None, f))
        self.skip_output.build((None, None, None, f))
        if self.condition_channels:
            self.vertical_condition.build((None, None, None, self.condition_channels))
            self.horizontal_condition.build((None, None, None, self.condition_channels))

    def call(self, vertical, horizontal, condition=None):
        n = self.reach
        padded_rows = tf.pad(vertical, [[0, 0], [n, 0], [n, n], [0, 0]])  # (batch, h + n, w + 2n, F)
        vertical_pre = self.vertical_preactivation(padded_rows, condition)  # (batch, h, w, 2F)
        padded_positions = tf.pad(horizontal, [[0, 0], [0, 0], [n, 0], [0, 0]])  # (batch, h, w + n, F)
        horizontal, skip = self.horizontal_outputs(padded_positions, vertical_pre, horizontal, condition)
        return _gate(vertical_pre), horizontal, skip

    def vertical_preactivation(self, padded_rows, condition=None):
        """(batch, rows + n, columns + 2n, F) vertical inputs, padded -> (batch, rows, columns, 2F) v_pre.

        condition: (batch, rows, columns, C) the condition map at the output positions, or None."""
        return self._condition(self.vertical_conv(padded_rows), condition, self.vertical_condition)

    def horizontal_outputs(self, padded_positions, vertical_pre, horizontal, condition=None):
        """New horizontal stack and skip output, each (batch, rows, columns, F).

        padded_positions: (batch, rows, columns + n, F) horizontal inputs padded n columns on the left;
        vertical_pre: (batch, rows, columns, 2F) the vertical pre-activations at the same positions;
        horizontal: (batch, rows, columns, F) the horizontal inputs there, for the residual connection;
        condition: (batch, rows, columns, C) the condition map there, or None.
        """
        horizontal_pre = self.horizontal_conv(padded_positions) + self.vertical_to_horizontal(vertical_pre)
        gated = _gate(self._condition(horizontal_pre, condition, self.horizontal_condition))  # (batch, rows, cols, F)
        return horizontal + self.horizontal_output(gated), self.skip_output(gated)

    def _condition(self, preactivation, condition, projection):
        if not self.condition_channels:
            return preactivation
        return preactivation + projection(condition)  # + V * s (eq. 5): (batch, rows, columns, 2F)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "condition_channels": self.condition_channels}


@keras.saving.register_keras_serializable(package="keras_vqvae")
class GatedPixelCNN(AutoregressivePrior):
    """Autoregressive prior over code-index maps: a gated PixelCNN without blind spot (van den Oord et al. 2016).

    codes (batch, h, w) -> embedding of each code plus a learned embedding of its position (batch, h, w, F) ->
    `layers` GatedBlocks (the first sees the embedding shifted
    down one row in its vertical stack and right one column in its horizontal stack, so that no position sees its
    own code) -> the last horizontal stack plus the sum of all skip outputs -> relu, 1x1 conv, relu, 1x1 conv ->
    logits (batch, h, w, K).

    The position embedding tells each output how far down the map it is (the codes before it carry their positions);
    without it, a layer far below the top sees only background above and the top's padding is out of its reach, so it
    cannot tell the empty rows under a slice from those above one and now and then starts a new brain at the bottom.

    A conditional prior turns its label into a condition map s (batch, h, w, C): a learned feature vector for every
    label and position, which every block adds to its pre-activations (paper eq. 5, location-dependent conditioning).
    Slices of one level share their layout (where the ventricles, the midline and the cortex lie), and the map gives
    each position that layout directly, where a label bias per channel (eq. 4) leaves the network to work out from
    the codes before a position where in the anatomy it is.

    Trained with `fit` as every `AutoregressivePrior` (its loss, metrics, data and conditioning).

    Args:
        num_embeddings: K, the VQ-VAE's codebook size.
        grid_shape: (h, w) of the code maps, the size samples are drawn at.
        filters: F, channels of the gated stacks. Default 64.
        layers: number of GatedBlocks. Default 12.
        kernel_size: odd kernel width of the stacks. Default 5.
        num_classes: number of class labels to condition on (e.g. slice positions); 0 for none. Default 0.
        unconditional_rate: fraction of training maps taught as the null class, "any position" (see
            `AutoregressivePrior`). Default `UNCONDITIONAL_RATE`, 0.1.
        condition_channels: C, channels of the condition map of a conditional prior. Default 16.

    Reference:
        A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu, "Conditional Image
        Generation with PixelCNN Decoders", NeurIPS 2016.
    """

    def __init__(self, num_embeddings: int, grid_shape: tuple[int, int], filters: int = 64, layers: int = 12,
                 kernel_size: int = 5, num_classes: int = 0, unconditional_rate: float = UNCONDITIONAL_RATE,
                 condition_channels: int = 16, **kwargs):
        kwargs.setdefault("name", "gated_pixelcnn")
        super().__init__(num_embeddings, grid_shape, num_classes, unconditional_rate, **kwargs)
        if layers < 1 or filters < 1 or condition_channels < 1:
            raise ValueError(f"need layers, filters and condition_channels >= 1, got {layers}, {filters}, "
                             f"{condition_channels}")
        self.filters, self.num_layers, self.kernel_size = filters, layers, kernel_size
        self.condition_channels = condition_channels
        self.code_embedding = keras.layers.Embedding(num_embeddings, filters, name="code_embedding")
        self.position_embedding = keras.layers.Embedding(math.prod(self.grid_shape), filters,
                                                         name="position_embedding")
        if num_classes:  # one (h * w * C) condition map per label, the null class's included
            map_size = math.prod(self.grid_shape) * condition_channels
            self.condition_maps = keras.layers.Embedding(self.num_labels, map_size, name="condition_maps")
        self.blocks = [GatedBlock(filters, kernel_size, condition_channels if num_classes else 0,
                                  name=f"gated_block_{i}") for i in range(layers)]
        self.output_hidden = keras.layers.Conv2D(filters, 1, name="output_hidden")
        self.output_logits = keras.layers.Conv2D(num_embeddings, 1, name="output_logits", dtype="float32")
        self.build()

    def call(self, codes, labels=None, training=None):
        """Logits (batch, h, w, K) of each code given the codes before it; codes (batch, h, w) int."""
        positions = tf.reshape(tf.range(math.prod(self.grid_shape)), self.grid_shape)  # raster index (h, w)
        return self.logits_from_embeddings(self.embed(codes, positions), self.condition_map(labels))

    def embed(self, codes, positions):
        """Code embedding plus position embedding, (..., F), of codes (...) at raster positions (...) (broadcast)."""
        return self.code_embedding(codes) + self.position_embedding(positions)

    def condition_map(self, labels):
        """The condition map s (batch, h, w, C) of labels (batch,) int, or None for an unconditional prior."""
        if not self.num_classes:
            return None
        return tf.reshape(self.condition_maps(labels), (-1, *self.grid_shape, self.condition_channels))

    def logits_from_embeddings(self, embedded, condition=None):
        """Logits (batch, h, w, K) from embedded codes (batch, h, w, F) and the condition map (batch, h, w, C) or
        None: the network after its embedding layers."""
        vertical, horizontal = _shift_down(embedded), _shift_right(embedded)
        skips = []
        for block in self.blocks:
            vertical, horizontal, skip = block(vertical, horizontal, condition)
            skips.append(skip)
        return self.output_head(horizontal + tf.add_n(skips))

    def output_head(self, features):
        """(..., F) last horizontal stack plus the blocks' skip outputs -> (..., K) logits."""
        return self.output_logits(tf.nn.relu(self.output_hidden(tf.nn.relu(features))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "layers": self.num_layers,
                "kernel_size": self.kernel_size, "condition_channels": self.condition_channels}
