import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import LatentDCGAN, VectorQuantizer
from keras_vqvae.metrics.generation import collapse_warning
from keras_vqvae.priors import DiversityMonitor, InpaintingSampler, NoiseSampler
from keras_vqvae.priors.sampler import sample_seeds
from keras_vqvae.priors.dcgan import _doublings

K, D, GRID = 16, 4, (8, 16)


def trained_quantizer(seed=0):
    quantizer = VectorQuantizer(K, D)
    quantizer.build((None, D))
    quantizer.codebook.assign(np.random.default_rng(seed).normal(size=(K, D)).astype("float32"))
    return quantizer


def small_gan(snapping="nearest", seed=0):
    keras.utils.set_random_seed(seed)
    gan = LatentDCGAN(trained_quantizer(), GRID, noise_dim=8, filters=4, snapping=snapping, seed=seed)
    gan.compile(keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-3, beta_1=0.5))
    return gan


def toy_codes(count=8, seed=1):
    return np.random.default_rng(seed).integers(0, K, size=(count, *GRID)).astype("int32")


@pytest.mark.parametrize("snapping, channels", [("nearest", D), ("binned", 1)])
def test_shapes_of_both_networks_and_of_samples(snapping, channels):
    gan = small_gan(snapping)
    maps = gan(gan.noise(3, seed=(0, 0)))
    assert maps.shape == (3, *GRID, channels)
    assert gan.discriminator(maps).shape == (3, 1)
    assert gan.real_maps(toy_codes(3)).shape == (3, *GRID, channels)
    codes = NoiseSampler(gan).sample(5, seed=2, batch_size=2)
    assert codes.shape == (5, *GRID) and codes.dtype == np.int32


def test_the_networks_follow_the_dcgan_layout():
    assert _doublings((32, 32)) == 3 and _doublings((64, 64)) == 4 and _doublings((8, 16)) == 1
    gan = small_gan()
    generator_layers = [type(layer).__name__ for layer in gan.generator.layers]
    assert generator_layers.count("Conv2DTranspose") == 1 and "BatchNormalization" in generator_layers
    assert not any(name in generator_layers for name in ("MaxPooling2D", "UpSampling2D"))
    discriminator_layers = [type(layer).__name__ for layer in gan.discriminator.layers]
    assert discriminator_layers[:2] == ["Conv2D", "LeakyReLU"]  # no batch norm on the input layer
    with pytest.raises(ValueError, match="too small"):
        LatentDCGAN(trained_quantizer(), (6, 6))


@pytest.mark.parametrize("snapping", ["nearest", "binned"])
def test_one_training_step_changes_both_networks_and_not_the_codebook(snapping):
    gan = small_gan(snapping)
    before = {name: [w.numpy().copy() for w in network.trainable_weights]
              for name, network in (("generator", gan.generator), ("discriminator", gan.discriminator))}
    codebook = gan.quantizer.codebook.numpy().copy()
    logs = gan.train_on_batch(toy_codes(8), return_dict=True)
    assert set(logs) == {"generator_loss", "discriminator_loss", "real_score", "fake_score"}
    assert all(np.isfinite(value) for value in logs.values())
    for name, network in (("generator", gan.generator), ("discriminator", gan.discriminator)):
        after = [w.numpy() for w in network.trainable_weights]
        assert all(not np.allclose(old, new) for old, new in zip(before[name], after)), name
    np.testing.assert_array_equal(gan.quantizer.codebook.numpy(), codebook)
    assert gan.generator_optimizer.iterations.numpy() == gan.discriminator_optimizer.iterations.numpy() == 1


@pytest.mark.parametrize("snapping", ["nearest", "binned"])
def test_snapping_gives_valid_indices_and_takes_real_maps_back_to_their_codes(snapping):
    gan = small_gan(snapping)
    codes = toy_codes(4)
    np.testing.assert_array_equal(gan.snap(gan.real_maps(codes)), codes)
    wild = tf.random.stateless_normal((4, *GRID, gan.generator.output_shape[-1]), seed=(3, 4)) * 100.0
    snapped = gan.snap(wild).numpy()
    assert snapped.dtype == np.int32 and snapped.min() >= 0 and snapped.max() < K
    assert len(np.unique(snapped)) > 1


def test_nearest_snapping_picks_the_nearest_codebook_vector():
    gan = small_gan("nearest")
    maps = tf.random.stateless_normal((2, *GRID, D), seed=(5, 6))
    codebook = gan.quantizer.codebook.numpy()
    distances = np.sum((maps.numpy()[..., None, :] - codebook) ** 2, axis=-1)  # (2, h, w, K)
    np.testing.assert_array_equal(gan.snap(maps), distances.argmin(axis=-1))


def test_binned_snapping_cuts_minus_one_to_one_into_even_bins():
    gan = small_gan("binned")
    values = tf.constant([-1.5, -1.0, -0.99, -1.0 + 2.0 / K + 1e-4, 0.0, 0.999, 1.0, 2.0])
    maps = tf.reshape(tf.tile(values, [GRID[0] * GRID[1] // 8]), (1, *GRID, 1))
    np.testing.assert_array_equal(gan.snap(maps).numpy()[0, 0, :8], [0, 0, 0, 1, K // 2, K - 1, K - 1, K - 1])


def test_a_samples_codes_depend_on_the_seed_and_its_index_only_and_temperature_scales_the_noise():
    gan = small_gan()
    sampler = NoiseSampler(gan)
    np.testing.assert_array_equal(sampler.sample(6, seed=3, batch_size=4), sampler.sample(6, seed=3, batch_size=6))
    np.testing.assert_array_equal(sampler.sample(4, seed=3, batch_size=1), sampler.sample(6, seed=3)[:4])
    assert not np.array_equal(sampler.sample(6, seed=3), sampler.sample(6, seed=4))
    seeds = sample_seeds(1, 0, 4)
    noise = tf.stack([tf.random.stateless_normal([gan.noise_dim], seed=seed) for seed in seeds])  # (4, noise_dim)
    np.testing.assert_array_equal(sampler.draw(seeds, 0.5), gan.codes_from_noise(0.5 * noise))


def test_the_noise_sampler_draws_whole_maps_and_refuses_codes_to_draw_around():
    sampler = NoiseSampler(small_gan())
    assert not isinstance(sampler, InpaintingSampler)
    codes = toy_codes(2)
    with pytest.raises(TypeError, match="given"):
        sampler.draw(sample_seeds(0, 0, 2), 1.0, given=(codes, codes > K // 2))


def test_the_dcgan_round_trips_through_a_keras_file_with_both_optimizers(tmp_path):
    gan = small_gan("binned")
    gan.fit(toy_codes(16), batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "dcgan.keras"
    gan.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, LatentDCGAN) and loaded.get_config() == gan.get_config()
    np.testing.assert_array_equal(NoiseSampler(loaded).sample(4, seed=9), NoiseSampler(gan).sample(4, seed=9))
    for name in ("generator_optimizer", "discriminator_optimizer"):
        original, restored = getattr(gan, name), getattr(loaded, name)
        assert restored.iterations.numpy() == original.iterations.numpy() == 2
        for old, new in zip(original.variables, restored.variables):
            np.testing.assert_array_equal(old.numpy(), new.numpy())
    # and training goes on from there exactly as it would have in the original
    np.testing.assert_allclose(loaded.train_on_batch(toy_codes(8), return_dict=True)["discriminator_loss"],
                               gan.train_on_batch(toy_codes(8), return_dict=True)["discriminator_loss"], rtol=1e-5)


def test_collapse_warning_compares_generated_with_real_diversity():
    assert collapse_warning({"diversity_ms_ssim": 0.62, "real_diversity_ms_ssim": 0.6}) is None
    warning = collapse_warning({"diversity_ms_ssim": 0.95, "real_diversity_ms_ssim": 0.6})
    assert "collapsed" in warning and "0.95" in warning and "limit 0.80" in warning


class _ConstantDecoder:
    """Stands for a VQ-VAE whose decoder gives every code map the same slice."""

    def decode(self, codes):
        return tf.zeros((len(codes), 32, 32, 1)) + tf.linspace(-0.5, 0.5, 32)[:, None, None]


def test_the_diversity_monitor_logs_every_epoch_and_warns_when_samples_collapse(capsys):
    real = np.random.default_rng(0).uniform(size=(6, 32, 32, 1)).astype("float32")
    monitor = DiversityMonitor(_ConstantDecoder(), real, num_samples=4)
    monitor.set_model(small_gan())
    logs = {}
    monitor.on_epoch_end(0, logs)
    assert logs["diversity_ms_ssim"] == pytest.approx(1.0, abs=1e-4)  # every generated slice is the same image
    assert "warning: epoch 1: the generated slices look collapsed" in capsys.readouterr().out


def test_evaluation_repeats_itself_and_trains_nothing():
    gan = small_gan()
    gan.fit(toy_codes(16), batch_size=8, epochs=1, verbose=0)
    trainable = [w.numpy().copy() for w in gan.trainable_weights]
    first = gan.evaluate(toy_codes(8, seed=5), batch_size=8, return_dict=True, verbose=0)
    assert gan.evaluate(toy_codes(8, seed=5), batch_size=8, return_dict=True, verbose=0) == first
    for before, after in zip(trainable, gan.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_a_few_steps_teach_the_discriminator_to_score_real_maps_above_generated_ones():
    gan = small_gan()
    gan.compile(keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-2, beta_1=0.5))
    codes = toy_codes(16)
    gan.fit(codes, batch_size=8, epochs=10, verbose=0)  # 20 steps
    scores = gan.evaluate(codes, batch_size=16, return_dict=True, verbose=0)
    assert scores["real_score"] > scores["fake_score"] + 0.2
    real = tf.sigmoid(gan.discriminator(gan.real_maps(codes), training=True))  # D(x) of each real map, (16, 1)
    assert scores["real_score"] == pytest.approx(float(tf.reduce_mean(real)), rel=1e-5)
