"""Transformer prior over code maps: a decoder-only transformer over the h * w codes in raster order, with causal
self-attention, so that every code sees every code before it, however far above (Vaswani et al. 2017; the design of
VQ-GAN's and MONAI's VQ-VAE + transformer priors). Two samplers draw the same codes: a reference one that runs the
whole network for every position, and one that caches each layer's keys and values.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_vqvae.models.optimization import cosine_adam
from keras_vqvae.priors.autoregressive import UNCONDITIONAL_RATE, AutoregressivePrior
from keras_vqvae.priors.kind import PriorContext, PriorKind
from keras_vqvae.priors.sampler import CachingSampler, ReferenceSampler, draw_or_keep
from keras_vqvae.priors.settings import TransformerSettings

MASKED = -1e9  # the attention score of a position a query may not see: exp underflows to exactly 0


@keras.saving.register_keras_serializable(package="keras_vqvae")
class TransformerBlock(keras.layers.Layer):
    """One pre-normalised transformer layer: causal multi-head self-attention, then a two-layer MLP, each added back.

        x = x + W_o Attention(LN(x))      Attention = softmax(Q K^T / sqrt(d_head) + causal mask) V   (Vaswani eq. 1)
        x = x + W_2 gelu(W_1 LN(x))

    `call` runs on a whole sequence; `step` runs one new position against cached keys and values, with the same
    weights, which is how `CachedTransformerSampler` draws.

    Args:
        dim: d, the width of the sequence's vectors.
        heads: attention heads; d must divide by it.
        mlp_ratio: the MLP's hidden width as a multiple of d. Default 4.

    Call arguments:
        x: (batch, T, d).

    Returns:
        (batch, T, d).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, **kwargs):
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.dim, self.heads, self.mlp_ratio = dim, heads, mlp_ratio
        self.head_dim = dim // heads
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.query_key_value = keras.layers.Dense(3 * dim, name="query_key_value")
        self.attention_output = keras.layers.Dense(dim, name="attention_output")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="mlp_norm")
        self.mlp_hidden = keras.layers.Dense(mlp_ratio * dim, activation="gelu", name="mlp_hidden")
        self.mlp_output = keras.layers.Dense(dim, name="mlp_output")

    def build(self, input_shape=None):
        for norm in (self.attention_norm, self.mlp_norm):
            norm.build((None, None, self.dim))
        self.query_key_value.build((None, None, self.dim))
        self.attention_output.build((None, None, self.dim))
        self.mlp_hidden.build((None, None, self.dim))
        self.mlp_output.build((None, None, self.mlp_ratio * self.dim))

    def _heads(self, x):
        """(batch, T, d) -> queries, keys, values, each (batch, heads, T, d_head)."""
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        projected = tf.reshape(self.query_key_value(self.attention_norm(x)),
                               (batch, length, 3, self.heads, self.head_dim))
        queries, keys, values = tf.unstack(tf.transpose(projected, (2, 0, 3, 1, 4)))
        return queries, keys, values

    def _attend(self, x, queries, keys, values, visible):
        """x plus attention output, then the MLP; queries (batch, H, t, dh) over keys / values (batch, H, T, dh),
        visible (t, T) bool: which keys each query may see."""
        scores = tf.einsum("bhqd,bhkd->bhqk", queries, keys) / math.sqrt(self.head_dim)  # (batch, H, t, T)
        weights = tf.nn.softmax(tf.where(visible, scores, tf.cast(MASKED, scores.dtype)), axis=-1)
        attended = tf.einsum("bhqk,bhkd->bhqd", weights, values)  # (batch, H, t, dh)
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        merged = tf.reshape(tf.transpose(attended, (0, 2, 1, 3)), (batch, length, self.dim))  # (batch, t, d)
        x = x + self.attention_output(merged)
        return x + self.mlp_output(self.mlp_hidden(self.mlp_norm(x)))

    def call(self, x):
        queries, keys, values = self._heads(x)
        length = tf.shape(x)[1]
        causal = tf.linalg.band_part(tf.ones((length, length), tf.bool), -1, 0)  # (T, T): key <= query
        return self._attend(x, queries, keys, values, causal)

    def step(self, x, keys, values, position):
        """The layer at one new position: x (batch, 1, d) at `position`, keys / values (batch, H, T, dh) cached for
        the positions before it (zeros from `position` on). Returns the output (batch, 1, d) and the caches with
        this position's key and value written in."""
        query, key, value = self._heads(x)  # (batch, H, 1, dh) each
        length = keys.shape[2]
        here = tf.reshape(tf.one_hot(position, length, dtype=keys.dtype), (1, 1, length, 1))
        keys, values = keys + here * key, values + here * value
        visible = tf.range(length)[None] <= position  # (1, T)
        return self._attend(x, query, keys, values, visible), keys, values

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="keras_vqvae")
class CodeTransformer(AutoregressivePrior):
    """Autoregressive prior over code-index maps: a decoder-only transformer over the codes in raster order.

    codes (batch, h, w) -> the sequence of T = h * w codes -> inputs: at position 0 a start vector (the label's
    embedding when conditional, else a learned one), at position t the embedding of code t - 1, each plus a learned
    embedding of position t -> `layers` TransformerBlocks with causal attention -> layer normalisation -> logits
    (batch, h, w, K) of each code given every code before it.

    Trained with `fit` as every `AutoregressivePrior` (its loss, metrics, data and conditioning).

    Args:
        num_embeddings: K, the VQ-VAE's codebook size.
        grid_shape: (h, w) of the code maps.
        dim: d, the width of the sequence's vectors. Default 128.
        layers: number of TransformerBlocks. Default 4.
        heads: attention heads. Default 4.
        num_classes: number of class labels to condition on (e.g. slice positions); 0 for none. Default 0.
        unconditional_rate: fraction of training maps taught as the null class, "any position" (see
            `AutoregressivePrior`). Default `UNCONDITIONAL_RATE`, 0.1.

    Reference:
        A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, L. Kaiser, I. Polosukhin,
        "Attention Is All You Need", NeurIPS 2017. P. Esser, R. Rombach, B. Ommer, "Taming Transformers for
        High-Resolution Image Synthesis", CVPR 2021 (a transformer prior over VQ codes).
    """

    def __init__(self, num_embeddings: int, grid_shape: tuple[int, int], dim: int = 128, layers: int = 4,
                 heads: int = 4, num_classes: int = 0, unconditional_rate: float = UNCONDITIONAL_RATE,
                 **kwargs):
        kwargs.setdefault("name", "code_transformer")
        super().__init__(num_embeddings, grid_shape, num_classes, unconditional_rate, **kwargs)
        if layers < 1 or dim < 1:
            raise ValueError(f"need layers >= 1 and dim >= 1, got {layers}, {dim}")
        self.dim, self.num_layers, self.heads = dim, layers, heads
        self.length = math.prod(self.grid_shape)
        self.code_embedding = keras.layers.Embedding(num_embeddings, dim, name="code_embedding")
        self.position_embedding = keras.layers.Embedding(self.length, dim, name="position_embedding")
        self.start_embedding = keras.layers.Embedding(max(self.num_labels, 1), dim, name="start_embedding")
        self.blocks = [TransformerBlock(dim, heads, name=f"transformer_block_{i}") for i in range(layers)]
        self.output_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="output_norm")
        self.output_logits = keras.layers.Dense(num_embeddings, name="output_logits", dtype="float32")
        self.build()

    def start(self, labels, batch):
        """The input at position 0, (batch, 1, d): the label's embedding, or the one learned start vector."""
        labels = tf.zeros((batch,), tf.int32) if labels is None else tf.cast(labels, tf.int32)
        return self.start_embedding(labels)[:, None]

    def call(self, codes, labels=None, training=None):
        batch = tf.shape(codes)[0]
        sequence = tf.reshape(tf.cast(codes, tf.int32), (batch, self.length))  # (batch, T)
        inputs = tf.concat([self.start(labels, batch), self.code_embedding(sequence[:, :-1])], axis=1)  # (batch, T, d)
        x = inputs + self.position_embedding(tf.range(self.length))[None]
        for block in self.blocks:
            x = block(x)
        logits = self.output_logits(self.output_norm(x))  # (batch, T, K)
        return tf.reshape(logits, (batch, *self.grid_shape, self.num_embeddings))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "layers": self.num_layers, "heads": self.heads}


class CachedTransformerSampler(CachingSampler):
    """Draws position by position, each layer keeping the keys and values of the positions before (a key/value
    cache): one position costs one row of attention per layer instead of the whole network on the whole map. The
    layers' own weights do the work, so the codes drawn are the reference sampler's. The whole batch is one graph
    function (see `CachingSampler`).

    Args:
        prior: the trained `CodeTransformer`.
    """

    def _fill(self, uniforms, temperature, labels, given, size):
        prior = self.prior
        length, dim = prior.length, prior.dim
        dtype = prior.code_embedding.compute_dtype
        empty = [tf.zeros((size, prior.heads, length, dim // prior.heads), dtype) for _ in prior.blocks]

        def position_step(position, codes, x, keys, values):
            """x: (batch, 1, d) the input at `position`; keys / values: per block (batch, H, T, dh)."""
            x = x + prior.position_embedding(position)[None, None]
            new_keys, new_values = [], []
            for block, block_keys, block_values in zip(prior.blocks, keys, values):
                x, block_keys, block_values = block.step(x, block_keys, block_values, position)
                new_keys.append(block_keys)
                new_values.append(block_values)
            logits = prior.output_logits(prior.output_norm(x))[:, 0]  # (batch, K)
            drawn = draw_or_keep(logits, temperature, uniforms, given, position)
            codes = codes + tf.one_hot(position, length, dtype=tf.int32)[None] * drawn[:, None]
            return position + 1, codes, prior.code_embedding(drawn)[:, None], new_keys, new_values

        _, codes, _, _, _ = tf.while_loop(
            lambda position, *_: position < length, position_step,
            (tf.constant(0), tf.zeros((size, length), tf.int32), prior.start(labels, size), empty, empty))
        return tf.reshape(codes, (-1, *prior.grid_shape))


def build_transformer(settings: TransformerSettings, context: PriorContext) -> CodeTransformer:
    """The code transformer over the context's code maps, with Adam on a cosine schedule."""
    prior = CodeTransformer(context.vqvae.quantizer.num_embeddings, context.grid_shape, settings.dim, settings.layers,
                            settings.heads, context.num_classes, settings.unconditional_rate)
    prior.compile(optimizer=cosine_adam(settings.learning_rate, settings.epochs, context.steps_per_epoch))
    return prior


TRANSFORMER = PriorKind(
    name="transformer", description="a decoder-only transformer over the codes", model_class=CodeTransformer,
    settings=TransformerSettings, build=build_transformer,
    samplers=(ReferenceSampler, CachedTransformerSampler), default_sampler=CachedTransformerSampler.name,
    conditional=True, fit_summary=lambda test: f"test NLL {test['nll']:.2f} bits/code, ")
