"""DCGAN prior over the VQ-VAE's latent space (Radford et al. 2016), the alternative earlier OASIS projects used.

A generator maps Gaussian noise to a continuous latent map; snapping it onto the code grid gives a code map that the
VQ-VAE decodes. A discriminator, trained against it, tells the latent maps of real slices from generated ones. Its
sampler and prior kind are in `keras_vqvae.priors.dcgan_sampling`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_vqvae.models.optimization import minimize, step_logs
from keras_vqvae.models.quantizer import VectorQuantizer
from keras_vqvae.priors.settings import SNAPPING

SMALLEST_MAP_SIDE = 4  # the generator starts from, and the discriminator ends at, maps at least this small


def _doublings(grid_shape: tuple[int, int]) -> int:
    """How many times both sides of the grid halve while staying whole and at least SMALLEST_MAP_SIDE: 3 for 32x32."""
    count, (height, width) = 0, grid_shape
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= SMALLEST_MAP_SIDE:
        count, height, width = count + 1, height // 2, width // 2
    return count


def grid_problem(grid_shape: tuple[int, int]) -> str | None:
    """Why the DCGAN cannot model code maps of `grid_shape` (h, w), or None when it can."""
    if _doublings(grid_shape) < 1:
        return f"needs code maps with both sides even and at least {2 * SMALLEST_MAP_SIDE}"
    return None


def _scaled(optimizer: keras.optimizers.Optimizer, policy: str) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped for dynamic loss scaling under float16 (as `keras.Model.compile` wraps its own)."""
    if policy == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


@keras.saving.register_keras_serializable(package="keras_vqvae")
class LatentDCGAN(keras.Model):
    """Generative adversarial prior over latent maps of a trained VQ-VAE, trained with `fit` on code maps.

    Networks (DCGAN rules: strided convolutions instead of pooling, batch normalisation, ReLU in the generator and
    LeakyReLU 0.2 in the discriminator, no batch normalisation on the discriminator's input layer):

        generator:     z (noise_dim,) ~ N(0, I) -> dense -> (h/2^n, w/2^n, F 2^(n-1)) -> n x [transposed conv,
                       stride 2, channels halved down to F] -> 3x3 conv -> latent map (h, w, C)
        discriminator: latent map (h, w, C) -> n x [conv, stride 2, channels doubled from F] -> dense -> logit

    where n = `_doublings(grid_shape)` (3 for a 32x32 grid). The two `snapping` modes differ in what a latent map is:

    * 'nearest': C = D, the codebook dimension, with a linear output, as the codebook's values are unbounded. Real
      maps are the quantised encodings e_k of real slices; a generated map is snapped to its nearest codebook
      vectors by the VQ-VAE's own `VectorQuantizer`.
    * 'binned' (the earlier projects' way): C = 1 with a tanh output, and real maps are code indices k scaled to
      the centres of K even bins of [-1, 1], (2k + 1) / K - 1; a generated map is snapped to the bin it falls in.
      Neighbouring indices name unrelated codes, so a small error of the generator picks an unrelated code.

    The discriminator judges the generator's continuous maps against the real (snapped) ones: snapping happens only
    when sampling. (Feeding it snapped generated maps, with straight-through gradients, collapsed every sample to one
    blurred blob within 30 epochs on the embedded data; continuous maps gave varied brain shapes within 10.)

    Losses: the non-saturating GAN objective (Goodfellow et al. 2014, section 3), with D(x) the discriminator's
    probability that x is real:

        discriminator_loss = -log D(x) - log(1 - D(G(z)))        generator_loss = -log D(G(z))

    Args:
        quantizer: the trained VQ-VAE's `VectorQuantizer`; a frozen copy is kept, so the prior decodes with any
            VQ-VAE that shares that codebook.
        grid_shape: (h, w) of the code maps.
        noise_dim: length of the generator's noise vector z. Default 128.
        filters: F, channels of the generator's last and the discriminator's first convolution. Default 64.
        snapping: 'nearest' or 'binned'. Default 'nearest'.
        seed: seed of the noise drawn in training (with the step number) and in evaluation. Default 0.

    `compile(generator_optimizer, discriminator_optimizer)`; `fit` on batches of code maps (batch, h, w) int.
    Tracked metrics: `generator_loss`, `discriminator_loss`, and `real_score` / `fake_score`, the discriminator's
    mean probability of "real" on real and on generated maps. In evaluation the generator runs in inference mode
    and the discriminator, as in training, normalises each batch by its own statistics.

    References:
        A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with Deep Convolutional Generative
        Adversarial Networks", ICLR 2016.
        I. Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
    """

    num_classes = 0  # unconditional: it takes no class labels (as `AutoregressivePrior.num_classes` of 0)
    has_null_class = False

    def __init__(self, quantizer: VectorQuantizer, grid_shape: tuple[int, int], noise_dim: int = 128,
                 filters: int = 64, snapping: str = "nearest", seed: int = 0, **kwargs):
        kwargs.setdefault("name", "latent_dcgan")
        super().__init__(**kwargs)
        if snapping not in SNAPPING:
            raise ValueError(f"snapping must be one of {', '.join(SNAPPING)}, got {snapping!r}")
        if noise_dim < 1 or filters < 1:
            raise ValueError(f"need noise_dim >= 1 and filters >= 1, got {noise_dim}, {filters}")
        self.grid_shape = tuple(int(side) for side in grid_shape)
        problem = grid_problem(self.grid_shape)
        if problem:
            raise ValueError(f"grid_shape {self.grid_shape} is too small: the DCGAN {problem}")
        self.noise_dim, self.filters, self.snapping, self.seed = noise_dim, filters, snapping, seed
        self.quantizer = VectorQuantizer.from_config(quantizer.get_config())
        self.quantizer.build((None, quantizer.embedding_dim))
        if quantizer.built:
            self.quantizer.set_weights(quantizer.get_weights())
        self.quantizer.trainable = False
        self.num_embeddings = quantizer.num_embeddings
        channels = quantizer.embedding_dim if snapping == "nearest" else 1
        self.generator = self._generator(channels)
        self.discriminator = self._discriminator(channels)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("generator_loss", "discriminator_loss", "real_score", "fake_score")}
        self.built = True

    def _generator(self, channels: int) -> keras.Sequential:
        n = _doublings(self.grid_shape)
        start_height, start_width = (side // 2 ** n for side in self.grid_shape)
        layers = [keras.Input((self.noise_dim,)),
                  keras.layers.Dense(start_height * start_width * self.filters * 2 ** (n - 1), use_bias=False),
                  keras.layers.BatchNormalization(), keras.layers.ReLU(),
                  keras.layers.Reshape((start_height, start_width, self.filters * 2 ** (n - 1)))]
        for i in reversed(range(n)):  # channels F 2^(n-1) ... F at doubling sizes
            layers += [keras.layers.Conv2DTranspose(self.filters * 2 ** max(i - 1, 0), 4, strides=2, padding="same",
                                                    use_bias=False),
                       keras.layers.BatchNormalization(), keras.layers.ReLU()]
        output = "linear" if self.snapping == "nearest" else "tanh"
        layers.append(keras.layers.Conv2D(channels, 3, padding="same", activation=output, dtype="float32"))
        return keras.Sequential(layers, name="generator")

    def _discriminator(self, channels: int) -> keras.Sequential:
        layers = [keras.Input((*self.grid_shape, channels))]
        for i in range(_doublings(self.grid_shape)):
            layers.append(keras.layers.Conv2D(self.filters * 2 ** i, 4, strides=2, padding="same", use_bias=i > 0))
            if i > 0:
                layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.LeakyReLU(0.2))
        layers += [keras.layers.Flatten(), keras.layers.Dense(1, dtype="float32")]
        return keras.Sequential(layers, name="discriminator")

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, generator_optimizer="adam", discriminator_optimizer="adam", **kwargs):
        """Two optimizers, one per network; other arguments as `keras.Model.compile` (no loss: the GAN has its own)."""
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer, self.discriminator_optimizer = (
            _scaled(keras.optimizers.get(optimizer), self.dtype_policy.name)
            for optimizer in (generator_optimizer, discriminator_optimizer))
        self._gan_compile_config = {"generator_optimizer": self.generator_optimizer,
                                    "discriminator_optimizer": self.discriminator_optimizer}

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {name: keras.optimizers.serialize(optimizer) for name, optimizer in self._gan_compile_config.items()}

    def compile_from_config(self, config):
        """Rebuilds both optimizers with their variables, so that a `.keras` file resumes training exactly."""
        self.compile(**{name: keras.optimizers.deserialize(value) for name, value in config.items()})
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def call(self, noise, training=None):
        """Continuous latent maps (batch, h, w, C) generated from noise (batch, noise_dim)."""
        return self.generator(noise, training=training)

    def real_maps(self, codes):
        """Latent maps (batch, h, w, C) of code maps (batch, h, w): codebook vectors, or bin centres."""
        codes = tf.cast(codes, tf.int32)
        if self.snapping == "nearest":
            return self.quantizer.lookup(codes)
        return (2.0 * tf.cast(codes, tf.float32)[..., None] + 1.0) / self.num_embeddings - 1.0

    def snap(self, maps):
        """Continuous latent maps (batch, h, w, C) -> code maps (batch, h, w) int32, every index in [0, K)."""
        if self.snapping == "nearest":
            return self.quantizer.nearest_indices(maps)
        bins = tf.floor((tf.cast(maps[..., 0], tf.float32) + 1.0) / 2.0 * self.num_embeddings)
        return tf.cast(tf.clip_by_value(bins, 0, self.num_embeddings - 1), tf.int32)

    def noise(self, batch_size, seed):
        """(batch_size, noise_dim) draws of N(0, I) for training, the same for the same seed pair (2,)."""
        return tf.random.stateless_normal((batch_size, self.noise_dim), seed=seed)

    def _noise_seed(self, training):
        """Training step t draws its noise from seed (seed, t), so a resumed run draws what it would have; evaluation
        always draws the same noise, so that its figures compare from epoch to epoch."""
        step = self.generator_optimizer.iterations if training else tf.constant(-1, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])

    def _adversarial_losses(self, codes, training):
        real = self.real_maps(codes)  # (batch, h, w, C)
        noise = self.noise(tf.shape(codes)[0], self._noise_seed(training))  # z: (batch, noise_dim)
        fake = self(noise, training=training)  # continuous latent maps, (batch, h, w, C)
        # The discriminator always normalises with batch statistics, as it does in training, where it sees real and
        # generated batches apart: moving averages over both would judge neither. They are never used.
        real_logits = self.discriminator(real, training=True)  # (batch, 1)
        fake_logits = self.discriminator(fake, training=True)
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits
        # -log D(x) - log(1 - D(G(z))): the discriminator's side of Goodfellow et al. eq. 1
        discriminator_loss = tf.reduce_mean(cross_entropy(tf.ones_like(real_logits), real_logits)
                                            + cross_entropy(tf.zeros_like(fake_logits), fake_logits))
        # -log D(G(z)): the generator's non-saturating objective (Goodfellow et al. section 3)
        generator_loss = tf.reduce_mean(cross_entropy(tf.ones_like(fake_logits), fake_logits))
        scores = {"real_score": tf.reduce_mean(tf.sigmoid(real_logits)),
                  "fake_score": tf.reduce_mean(tf.sigmoid(fake_logits))}
        return generator_loss, discriminator_loss, scores

    def _track(self, generator_loss, discriminator_loss, scores):
        for name, value in {"generator_loss": generator_loss, "discriminator_loss": discriminator_loss,
                            **scores}.items():
            self.trackers[name].update_state(value)
        return step_logs(self.metrics)

    def train_step(self, data):
        """One simultaneous update of both networks from one batch of real code maps and as many noise vectors."""
        codes = keras.utils.unpack_x_y_sample_weight(data)[0]
        with tf.GradientTape(persistent=True) as tape:
            generator_loss, discriminator_loss, scores = self._adversarial_losses(codes, training=True)
        minimize(self.generator_optimizer, generator_loss, self.generator.trainable_variables, tape)
        minimize(self.discriminator_optimizer, discriminator_loss, self.discriminator.trainable_variables, tape)
        del tape
        return self._track(generator_loss, discriminator_loss, scores)

    def test_step(self, data):
        codes = keras.utils.unpack_x_y_sample_weight(data)[0]
        return self._track(*self._adversarial_losses(codes, training=False))

    def codes_from_noise(self, noise):
        """Code maps (batch, h, w) int32 that the generator makes from noise (batch, noise_dim)."""
        return self.snap(self(noise, training=False))

    def get_config(self):
        return {**super().get_config(), "quantizer": keras.saving.serialize_keras_object(self.quantizer),
                "grid_shape": self.grid_shape, "noise_dim": self.noise_dim, "filters": self.filters,
                "snapping": self.snapping, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(quantizer=keras.saving.deserialize_keras_object(config.pop("quantizer")), **config)
