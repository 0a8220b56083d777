"""The decoder's adversarial term: the patch discriminator, its losses, the VQ-VAE that trains with it, and the
run settings that ask for it."""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import VQVAE, AdversarialVQVAE, Decoder, Encoder, PatchDiscriminator, VectorQuantizer
from keras_vqvae.models.adversarial import adaptive_weight, hinge_losses
from keras_vqvae.training.builders import build_vqvae
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.distribute import precision
from test_vqvae import assert_resumes_exactly


def networks():
    """An encoder, quantizer and decoder, with the same weights after every call."""
    keras.utils.set_random_seed(0)
    encoder, quantizer, decoder = Encoder(8, 16, 1, 4), VectorQuantizer(16, 8, dead_code_steps=0), Decoder(8, 16, 1, 4)
    quantizer.build(encoder.output.shape)  # its codebook drawn now, whatever is made before the model
    return encoder, quantizer, decoder


def adversarial_vqvae(start=0, weight=0.5):
    model = AdversarialVQVAE(*networks(), PatchDiscriminator(8, 2), adversarial_weight=weight,
                             adversarial_start_step=start, data_variance=0.05)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), discriminator_optimizer=keras.optimizers.Adam(1e-3))
    return model


def slices(subject_slices):
    return (subject_slices[:4, ::2, ::2, None] / 255.0 - 0.5).astype(np.float32)  # (4, 32, 32, 1)


def test_patch_discriminator_gives_one_logit_per_patch():
    discriminator = PatchDiscriminator(filters=8, stages=3)
    logits = discriminator(np.zeros((2, 64, 48, 1), np.float32))
    assert logits.shape == (2, 8, 6, 1)
    features = discriminator.features(np.zeros((2, 64, 48, 1), np.float32))
    assert [f.shape[1:] for f in features] == [(32, 24, 8), (16, 12, 16), (8, 6, 32), (8, 6, 1)]


@pytest.mark.parametrize("filters", [5, 6, 12])
def test_any_number_of_filters_builds_a_discriminator_whose_groups_divide_its_channels(filters):
    discriminator = PatchDiscriminator(filters=filters, stages=3)  # --discriminator-filters 5: 10 and 20 channels
    assert discriminator(tf.zeros((2, 32, 32, 1))).shape == (2, 4, 4, 1)
    norms = [layer for block in discriminator.blocks for layer in block
             if isinstance(layer, keras.layers.GroupNormalization)]
    assert [norm.groups for norm in norms] == [math.gcd(8, filters * 2), math.gcd(8, filters * 4)]


def test_hinge_losses_on_known_logits():
    real = tf.constant([[2.0, 0.5], [1.0, -1.0]])  # relu(1 - D): 0, 0.5, 0, 2 -> mean 0.625
    decoded = tf.constant([[-3.0, 0.0], [1.0, -0.5]])  # relu(1 + D): 0, 1, 2, 0.5 -> mean 0.875
    discriminator_loss, decoder_loss = hinge_losses(real, decoded)
    assert float(discriminator_loss) == pytest.approx(0.625 + 0.875)
    assert float(decoder_loss) == pytest.approx(-(-3.0 + 0.0 + 1.0 - 0.5) / 4)


def test_adaptive_weight_is_the_ratio_of_gradient_norms_clipped():
    reconstruction = tf.constant([3.0, 4.0])  # norm 5
    adversarial = tf.constant([0.0, 0.5])  # norm 0.5
    assert float(adaptive_weight(reconstruction, adversarial)) == pytest.approx(5 / (0.5 + 1e-4))
    assert float(adaptive_weight(reconstruction, tf.zeros(2))) == pytest.approx(1e4)  # 5 / 1e-4, clipped


def test_the_adversarial_term_waits_for_its_start_step(subject_slices):
    model = adversarial_vqvae(start=2)
    plain = VQVAE(*networks(), data_variance=0.05)  # the same networks, without the term
    plain.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.copy() for w in model.discriminator.get_weights()]
    for step in range(2):  # steps 0 and 1: the discriminator does not train, and the loss has no adversarial term
        logs = model.train_on_batch(slices(subject_slices), return_dict=True)
        plain.train_on_batch(slices(subject_slices))
        for a, b in zip(before, model.discriminator.get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
        for a, b in zip(plain.get_weights(), model.get_weights()):  # the VQ-VAE's own weights come first
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=f"step {step}")
    assert logs["loss"] == pytest.approx(logs["reconstruction_loss"] + logs["vq_loss"], rel=1e-6)
    assert {"adversarial_loss", "discriminator_loss"} <= set(logs) and logs["adaptive_weight"] > 0
    model.reset_metrics()
    logs = model.train_on_batch(slices(subject_slices), return_dict=True)  # step 2: it acts
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.discriminator.get_weights())]
    assert all(changed)
    expected = logs["reconstruction_loss"] + logs["vq_loss"] + 0.5 * logs["adversarial_loss"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_the_adversarial_term_moves_the_decoder_only_through_its_gradient(subject_slices):
    # The same first step with and without the term: the decoder's update differs, the discriminator's own
    # optimizer holds the discriminator's variables, and the autoencoder's optimizer never touches them.
    with_term, without = adversarial_vqvae(start=0, weight=5.0), adversarial_vqvae(start=10**6)
    for model in (with_term, without):
        model.train_on_batch(slices(subject_slices))
    differs = [not np.allclose(a, b) for a, b in zip(with_term.decoder.get_weights(), without.decoder.get_weights())]
    assert any(differs)
    discriminator_ids = {id(v) for v in with_term.discriminator.trainable_variables}
    assert not discriminator_ids & {id(v) for v in with_term.autoencoder_variables}
    assert with_term.discriminator_optimizer.iterations.numpy() == 1


def test_keras_file_resumes_adversarial_training_exactly_with_both_optimizers(tmp_path, subject_slices):
    model = adversarial_vqvae(start=1)
    for _ in range(3):
        model.train_on_batch(slices(subject_slices))
    model.save(tmp_path / "adversarial.keras")
    loaded = keras.saving.load_model(tmp_path / "adversarial.keras")
    assert type(loaded) is AdversarialVQVAE
    assert loaded.adversarial_weight == 0.5 and loaded.adversarial_start_step == 1
    np.testing.assert_allclose(loaded.reconstruct(slices(subject_slices)), model.reconstruct(slices(subject_slices)))
    assert_resumes_exactly(model, loaded, slices(subject_slices), ("optimizer", "discriminator_optimizer"))
    resumed = loaded.train_on_batch(slices(subject_slices), return_dict=True)
    continued = model.train_on_batch(slices(subject_slices), return_dict=True)
    for name in ("loss", "adversarial_loss", "discriminator_loss"):
        assert resumed[name] == pytest.approx(continued[name], rel=1e-5), name


def test_a_float16_keras_file_resumes_with_each_optimizer_scaling_its_loss_once(tmp_path, subject_slices):
    with precision("float16"):
        model = adversarial_vqvae()
        for _ in range(3):
            model.train_on_batch(slices(subject_slices))
        model.save(tmp_path / "float16.keras")
        loaded = keras.saving.load_model(tmp_path / "float16.keras")
    for name in ("optimizer", "discriminator_optimizer"):
        optimizer = getattr(loaded, name)
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer), name
        assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam), name  # not wrapped twice
    assert_resumes_exactly(model, loaded, slices(subject_slices), ("optimizer", "discriminator_optimizer"))


@pytest.mark.parametrize("changes, message", [
    ({"adversarial_weight": 0.0}, "adversarial_weight must be positive, got 0.0: for no adversarial term, build a "
                                  "plain VQVAE"),
    ({"adversarial_weight": -1.0}, "adversarial_weight must be positive"),
    ({"adversarial_start_step": -1}, "adversarial_start_step must not be negative, got -1: give the training step"),
    ({"data_variance": 0.0}, "data_variance must be positive"),
])
def test_bad_adversarial_arguments_are_refused_saying_what_to_give(changes, message):
    arguments = {"adversarial_weight": 0.1, **changes}
    with pytest.raises(ValueError, match=message):
        AdversarialVQVAE(*networks(), PatchDiscriminator(), **arguments)


def test_the_run_settings_build_a_plain_vqvae_unless_they_ask_for_the_adversarial_term():
    config = TrainConfig(channels=8, num_embeddings=16, embedding_dim=8, residual_blocks=0)
    plain = build_vqvae(config, data_variance=0.05, steps_per_epoch=10)
    assert type(plain) is VQVAE and plain.compiled
    adversarial = build_vqvae(dataclasses.replace(config, adversarial_weight=0.1, adversarial_start_epoch=3),
                              data_variance=0.05, steps_per_epoch=10)
    assert type(adversarial) is AdversarialVQVAE
    assert adversarial.adversarial_weight == 0.1 and adversarial.adversarial_start_step == 30  # 3 epochs of 10 steps
    learning_rate = adversarial.discriminator_optimizer.learning_rate.numpy()
    assert learning_rate == pytest.approx(config.discriminator_learning_rate)


def test_the_adversarial_start_of_an_older_config_json_is_read_as_its_epoch():
    saved = json.loads(TrainConfig(adversarial_weight=0.1, adversarial_start_epoch=5).to_json())
    saved["adversarial_start"] = saved.pop("adversarial_start_epoch")  # as config.json files of older runs have it
    assert TrainConfig.from_json(json.dumps(saved)).adversarial_start_epoch == 5
