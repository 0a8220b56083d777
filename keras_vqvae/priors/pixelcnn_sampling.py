"""Drawing code maps from a `GatedPixelCNN`: three samplers behind the one `Sampler` interface, drawing exactly the
same codes.

Every sampler fills the (h, w) map in raster order. The code at position p of a sample is drawn from the prior's
Categorical (at the given temperature) with the p-th of that sample's uniform numbers, drawn from its own seed
(`keras_vqvae.priors.sampler`), so a seed names the same codes whichever sampler draws them and however many samples
are drawn together; the samplers differ only in how they compute the logits at p:

* `ReferenceSampler` (`keras_vqvae.priors.sampler`'s, which serves every autoregressive prior) runs the whole
  network on the whole map for every position, from Python: obviously right, and h * w network evaluations per
  batch;
* `CompiledSampler` does the same inside one `tf.function` with a `tf.while_loop` over the positions of a row;
* `CachedSampler` (Ramachandran et al. 2017) keeps, for each block, the last rows and positions its convolutions
  read, computes each row's vertical stack once, and for each new position computes only the horizontal stack
  there: about h * w times less work than the reference.

None of them is compiled with XLA: XLA draws other random bits from the same stateless seed than TensorFlow's own
kernels, so its codes would differ from the reference sampler's, and on a CPU it made the cached sampler no faster.

Reference:
    P. Ramachandran, T. Le Paine, P. Khorrami, M. Babaeizadeh, S. Chang, Y. Zhang, M. Hasegawa-Johnson, R. Campbell,
    T. Huang, "Fast Generation for Convolutional Autoregressive Models", ICLR 2017 workshop.
"""

from __future__ import annotations

import tensorflow as tf

from keras_vqvae.models.optimization import cosine_adam
from keras_vqvae.priors.distribution import sample_uniforms
from keras_vqvae.priors.kind import PriorContext, PriorKind
from keras_vqvae.priors.pixelcnn import GatedPixelCNN, _gate
from keras_vqvae.priors.sampler import (CachingSampler, InpaintingSampler, ReferenceSampler, draw_or_keep, flat_given,
                                        set_codes)
from keras_vqvae.priors.settings import PixelCNNSettings


class CompiledSampler(InpaintingSampler):
    """The reference sampler's loop inside a `tf.function`: one `tf.while_loop` over the positions of each row.

    Each call draws one row, so that long runs can show progress; the work per position is still the whole network
    on the whole map.

    Args:
        prior: the trained `GatedPixelCNN`.
    """

    name = "compiled"

    def __init__(self, prior: GatedPixelCNN):
        super().__init__(prior)
        self._sample_row = tf.function(self._row, reduce_retracing=True)

    def _row(self, codes, row, uniforms, temperature, labels, given):
        w = self.prior.grid_shape[1]

        def draw_position(column, codes):
            logits = self.prior(codes, labels, training=False)[:, row, column]  # (batch, K)
            position = row * w + column
            return column + 1, set_codes(codes, position, draw_or_keep(logits, temperature, uniforms, given, position))

        return tf.while_loop(lambda column, _: column < w, draw_position, (tf.constant(0), codes))[1]

    def _draw(self, seeds, temperature, labels, advance, given=None):
        h, w = self.prior.grid_shape
        uniforms = sample_uniforms(seeds, h * w)  # (batch, h * w)
        given = flat_given(given)
        codes = tf.zeros((len(seeds), h, w), tf.int32)
        for row in range(h):
            codes = self._sample_row(codes, tf.constant(row), uniforms, temperature, labels, given)
            advance(w)
        return codes


class CachedSampler(CachingSampler):
    """Fast generation (Ramachandran et al. 2017): each block keeps the inputs its convolutions still need.

    Per block, a cache of the last n + 1 rows of its (padded) vertical input and of the last n + 1 positions of its
    horizontal input in the current row (n = kernel_size // 2). At the start of row i the vertical stacks of all blocks
    are computed for the whole row (they depend on rows above i only); then each position (i, j) runs only the
    horizontal stacks and the output head on one position. The blocks' own layers do the work, on windows instead of
    whole maps, so the codes drawn are the reference sampler's. The whole batch is one graph function (see
    `CachingSampler`).

    Args:
        prior: the trained `GatedPixelCNN`.
    """

    def _fill(self, uniforms, temperature, labels, given, size):
        prior = self.prior
        h, w = prior.grid_shape
        f, n = prior.filters, prior.blocks[0].reach
        dtype = prior.code_embedding.compute_dtype

        row_positions = tf.range(w)  # raster positions of a row's columns, less row * w
        condition = prior.condition_map(labels)  # (batch, h, w, C) or None

        def condition_at(row, column=None):
            """The condition map on row `row` (batch, 1, w, C), or at (row, column) (batch, 1, 1, C); or None."""
            if condition is None:
                return None
            return condition[:, row, None] if column is None else condition[:, row, column][:, None, None]

        def row_step(row, codes, above, row_caches):
            """above: (batch, 1, w, F) embedded codes of the row above; row_caches: per block (batch, n+1, w+2n, F)."""
            vertical_input, new_caches, vertical_pres = above, [], []
            row_condition = condition_at(row)
            for block, cache in zip(prior.blocks, row_caches):
                padded = tf.pad(vertical_input, [[0, 0], [0, 0], [n, n], [0, 0]])  # (batch, 1, w + 2n, F)
                cache = tf.concat([cache[:, 1:], padded], axis=1)  # the block's vertical input, rows i - n .. i
                vertical_pre = block.vertical_preactivation(cache, row_condition)  # (batch, 1, w, 2F)
                vertical_input = _gate(vertical_pre)
                new_caches.append(cache)
                vertical_pres.append(vertical_pre)

            def column_step(column, codes, left, position_caches):
                """left: (batch, 1, 1, F) embedded code left of (row, column); caches: per block (batch, 1, n+1, F)."""
                horizontal, new_position_caches, skips = left, [], []
                here_condition = condition_at(row, column)
                for block, cache, vertical_pre in zip(prior.blocks, position_caches, vertical_pres):
                    cache = tf.concat([cache[:, :, 1:], horizontal], axis=2)  # horizontal input, columns j - n .. j
                    here = vertical_pre[:, :, column][:, :, None]  # (batch, 1, 1, 2F)
                    horizontal, skip = block.horizontal_outputs(cache, here, horizontal, here_condition)
                    new_position_caches.append(cache)
                    skips.append(skip)
                logits = prior.output_head(horizontal + tf.add_n(skips))[:, 0, 0]  # (batch, K)
                position = row * w + column
                drawn = draw_or_keep(logits, temperature, uniforms, given, position)
                embedded = prior.embed(drawn, position)[:, None, None]  # (batch, 1, 1, F)
                return column + 1, set_codes(codes, position, drawn), embedded, new_position_caches

            empty_positions = [tf.zeros((size, 1, n + 1, f), dtype) for _ in prior.blocks]
            _, codes, _, _ = tf.while_loop(
                lambda column, *_: column < w, column_step,
                (tf.constant(0), codes, tf.zeros((size, 1, 1, f), dtype), empty_positions))
            return row + 1, codes, prior.embed(codes[:, row], row * w + row_positions)[:, None], new_caches

        empty_rows = [tf.zeros((size, n + 1, w + 2 * n, f), dtype) for _ in prior.blocks]
        _, codes, _, _ = tf.while_loop(
            lambda row, *_: row < h, row_step,
            (tf.constant(0), tf.zeros((size, h, w), tf.int32), tf.zeros((size, 1, w, f), dtype), empty_rows))
        return codes


def build_pixelcnn(settings: PixelCNNSettings, context: PriorContext) -> GatedPixelCNN:
    """The gated PixelCNN over the context's code maps, with Adam on a cosine schedule."""
    prior = GatedPixelCNN(context.vqvae.quantizer.num_embeddings, context.grid_shape, settings.filters,
                          settings.layers, settings.kernel_size, context.num_classes, settings.unconditional_rate)
    prior.compile(optimizer=cosine_adam(settings.learning_rate, settings.epochs, context.steps_per_epoch))
    return prior


PIXELCNN = PriorKind(
    name="pixelcnn", description="the gated PixelCNN", model_class=GatedPixelCNN,
    settings=PixelCNNSettings, build=build_pixelcnn,
    samplers=(ReferenceSampler, CompiledSampler, CachedSampler), default_sampler=CachedSampler.name,
    conditional=True, fit_summary=lambda test: f"test NLL {test['nll']:.2f} bits/code, ")
