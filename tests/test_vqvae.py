import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import VQVAE, Decoder, Encoder, ResidualBlock, VectorQuantizer
from keras_vqvae.batching import apply_in_batches, slices_of
from keras_vqvae.models.vqvae import _error_in_range


def small_vqvae(downsampling=4, ema_decay=0.99):
    return VQVAE(Encoder(8, 16, 1, downsampling), VectorQuantizer(16, 8, ema_decay=ema_decay, dead_code_steps=5),
                 Decoder(8, 16, 1, downsampling), data_variance=0.05)


def images(count=4, size=32, seed=0):
    return tf.random.stateless_uniform((count, size, size, 1), seed=(seed, 1), minval=-0.5, maxval=0.5)


@pytest.mark.parametrize("downsampling, code_side", [(2, 16), (4, 8), (8, 4)])
def test_shapes_follow_the_downsampling_factor(downsampling, code_side):
    model = small_vqvae(downsampling)
    x = images()
    assert model.encoder(x).shape == (4, code_side, code_side, 8)
    assert model.encode(x).shape == (4, code_side, code_side)
    assert model.decode(model.encode(x)).shape == x.shape
    assert model.reconstruct(x).shape == x.shape


def test_encoder_rejects_a_factor_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        Encoder(8, 16, 1, downsampling=6)


def test_residual_block_weights_and_identity_at_zero_weights():
    block = ResidualBlock(8, 4)
    x = tf.random.normal((2, 5, 5, 8))
    block(x)
    assert block.count_params() == (3 * 3 * 8 * 4 + 4) + (4 * 8 + 8)
    for weight in block.weights:
        weight.assign(tf.zeros_like(weight))
    np.testing.assert_allclose(block(x), x)


def test_reconstruction_loss_is_mse_over_variance_plus_vq_loss():
    model = small_vqvae()
    model.compile(optimizer="adam")
    x = images()
    metrics = model.evaluate(x, batch_size=4, return_dict=True, verbose=0)
    reconstructions = model.reconstruct(x)
    expected = float(tf.reduce_mean(tf.square(x - reconstructions))) / 0.05
    np.testing.assert_allclose(metrics["reconstruction_loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], metrics["reconstruction_loss"] + metrics["vq_loss"], rtol=1e-5)
    assert set(metrics) == {"loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage", "ssim", "psnr",
                            "brain_ssim"}


def test_the_error_is_that_of_the_clipped_image_at_the_edges_of_the_range():
    model = small_vqvae()
    originals = tf.constant([-0.5, 0.0, 0.5, -0.5, 0.5, -0.2])
    outputs = tf.constant([-0.7, 0.1, 0.6, -0.4, 0.3, -0.6])
    # below black on black and above white on white are exact once clipped; everything else is the plain error
    np.testing.assert_allclose(_error_in_range(originals, outputs), [0.0, 0.1, 0.0, 0.1, -0.2, -0.4], atol=1e-6)
    output_layer = model.decoder.get_layer("to_images")
    output_layer.kernel.assign(tf.zeros_like(output_layer.kernel))
    output_layer.bias.assign([-0.9])  # the decoder now says "darker than black" everywhere
    np.testing.assert_array_equal(model.decode(tf.zeros((1, 2, 2), tf.int32)), tf.fill((1, 8, 8, 1), -0.5))
    np.testing.assert_array_equal(model.reconstruct(images(1)), tf.fill((1, 32, 32, 1), -0.5))


def test_fit_lowers_the_loss_and_updates_every_part(subject_slices):
    keras.utils.set_random_seed(1)
    model = small_vqvae()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = subject_slices[..., None].astype(np.float32) / 255.0 - 0.5  # (8, 64, 64, 1)
    before = [w.numpy().copy() for w in (model.encoder.weights[0], model.decoder.weights[0], model.quantizer.codebook)]
    history = model.fit(x, batch_size=8, epochs=8, verbose=0, shuffle=False).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert set(history) == {"loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage"}
    after = (model.encoder.weights[0], model.decoder.weights[0], model.quantizer.codebook)
    assert all(not np.allclose(b, a) for b, a in zip(before, after))


def assert_resumes_exactly(original: keras.Model, reloaded: keras.Model, batch, optimizers=("optimizer",)):
    """`reloaded` holds the state of each optimizer of `original`, and one more training step on `batch` leaves
    the two models with the same weights (an optimizer restarted from zero would take a different step)."""
    for name in optimizers:
        saved, restored = getattr(original, name), getattr(reloaded, name)
        assert restored.iterations.numpy() == saved.iterations.numpy() > 0, name
        assert len(restored.variables) == len(saved.variables), name
        for a, b in zip(saved.variables, restored.variables):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {a.path}")
    original.train_on_batch(batch)
    reloaded.train_on_batch(batch)
    for a, b in zip(original.weights, reloaded.weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=a.path)


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_keras_file_round_trip_gives_identical_outputs_and_resumes_training_exactly(tmp_path, ema_decay):
    model = small_vqvae(ema_decay=ema_decay)
    model.compile(optimizer="adam")
    x = images(8)
    model.fit(x, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom_objects: the classes are registered
    assert type(loaded) is VQVAE and loaded.data_variance == model.data_variance
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    np.testing.assert_array_equal(loaded.encode(x), model.encode(x))
    for original, reloaded in zip(model.quantizer.weights, loaded.quantizer.weights):
        np.testing.assert_array_equal(original, reloaded)
    assert_resumes_exactly(model, loaded, x[:4])


def test_a_keras_file_whose_compile_config_holds_only_the_optimizer_resumes_with_it(tmp_path):
    # As VQVAE wrote them before its compile was Keras' own: run folders made then hold such checkpoints.
    model = small_vqvae()
    model.compile(optimizer="adam")
    model.fit(images(8), batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            content = new.read(item)
            if item.filename == "config.json":
                config = json.loads(content)
                config["compile_config"] = {"optimizer": config["compile_config"]["optimizer"]}
                content = json.dumps(config)
            old.writestr(item, content)
    assert_resumes_exactly(model, keras.saving.load_model(tmp_path / "old.keras"), images(4))


def test_a_plain_vqvae_carries_nothing_adversarial():
    model = small_vqvae()
    model.compile(optimizer="adam")
    for name in ("discriminator", "discriminator_optimizer", "adversarial_weight", "adversarial_start_step"):
        assert not hasattr(model, name), name
    config = model.get_config()
    assert {"encoder", "quantizer", "decoder", "data_variance"} <= set(config)
    assert not [key for key in config if "adversarial" in key or "discriminator" in key]
    assert not [key for key in model.get_compile_config() if "discriminator" in key]


@pytest.mark.parametrize("make", [lambda: Encoder(8, 16, 1, 4), lambda: Decoder(8, 16, 1, 4),
                                  lambda: VectorQuantizer(16, 8, ema_decay=None), lambda: ResidualBlock(8)])
def test_every_part_round_trips_on_its_own(tmp_path, make):
    part = make()
    x = tf.random.normal((2, 8, 8, 8 if not isinstance(part, Encoder) else 1))
    expected = part(x)
    wrapper = keras.Sequential([keras.Input(x.shape[1:]), part])
    wrapper.save(tmp_path / "part.keras")
    reloaded = keras.saving.load_model(tmp_path / "part.keras").layers[0]
    assert type(reloaded) is type(part) and reloaded.get_config() == part.get_config()
    for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(reloaded(x))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("encoder_dim, quantizer_dim, decoder_dim, data_variance, message", [
    (8, 8, 8, 0.0, "data_variance must be positive, got 0.0: give the variance of the training pixels"),
    (8, 8, 8, -1.0, "data_variance must be positive"),
    (8, 4, 8, 1.0, "the embedding dimensions differ .*the quantizer's codes 4.*: give the encoder, the quantizer"),
    (8, 8, 4, 1.0, "the embedding dimensions differ .*the decoder's inputs 4"),
])
def test_bad_arguments_are_refused_saying_what_to_give(encoder_dim, quantizer_dim, decoder_dim, data_variance,
                                                       message):
    with pytest.raises(ValueError, match=message):
        VQVAE(Encoder(encoder_dim, 16, 1, 4), VectorQuantizer(16, quantizer_dim), Decoder(decoder_dim, 16, 1, 4),
              data_variance=data_variance)


def test_batched_inference_traces_once_and_matches_eager_calls(capsys):
    model = small_vqvae()
    x = images(count=10)
    traces = []

    def encode(batch):
        traces.append(batch.shape)  # runs only while tracing
        return model.encode(batch)

    codes = apply_in_batches(encode, slices_of(x, 4), verbose=1)  # batches of 4, 4 and 2
    assert codes.shape == (10, 8, 8) and isinstance(codes, np.ndarray)
    np.testing.assert_array_equal(codes, model.encode(x).numpy())
    assert len(traces) <= 2  # the ragged last batch may retrace once, with the batch size left open
    assert "3/3" in capsys.readouterr().out  # the progress bar reached the last batch


def test_a_blank_slice_reconstructed_exactly_leaves_psnr_finite_and_the_metrics_strict_json():
    model = small_vqvae()
    model.compile(optimizer="adam")
    to_images = model.decoder.get_layer("to_images")
    to_images.bias.assign(tf.fill(to_images.bias.shape, -10.0))  # decodes black everywhere: a blank slice exactly
    blank, slices = tf.fill((2, 32, 32, 1), -0.5), images(2)
    metrics = model.evaluate(tf.concat([blank, slices], 0), batch_size=4, return_dict=True, verbose=0)
    reconstructions = model.reconstruct(slices) + 0.5
    expected = tf.image.psnr(slices + 0.5, reconstructions, max_val=1.0)  # the two slices only
    np.testing.assert_allclose(metrics["psnr"], float(tf.reduce_mean(expected)), rtol=1e-4)
    json.loads(json.dumps(metrics, allow_nan=False))  # no Infinity, which strict JSON readers refuse
