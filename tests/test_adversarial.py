"""The decoder's adversarial term: the patch discriminator, its losses, and the VQ-VAE that trains with it."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import VQVAE, Decoder, Encoder, VectorQuantizer
from keras_vqvae.models.adversarial import PatchDiscriminator, adaptive_weight, hinge_losses


def adversarial_vqvae(start=0, weight=0.5):
    keras.utils.set_random_seed(0)
    model = VQVAE(Encoder(8, 16, 1, 4), VectorQuantizer(16, 8, dead_code_steps=0), Decoder(8, 16, 1, 4),
                  data_variance=0.05, discriminator=PatchDiscriminator(8, 2), adversarial_weight=weight,
                  adversarial_start=start)
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
    before = [w.copy() for w in model.discriminator.get_weights()]
    logs = model.train_on_batch(slices(subject_slices), return_dict=True)
    # Step 0: the discriminator does not train, and the loss is the reconstruction and VQ terms alone.
    for a, b in zip(before, model.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert logs["loss"] == pytest.approx(logs["reconstruction_loss"] + logs["vq_loss"], rel=1e-6)
    assert {"adversarial_loss", "discriminator_loss"} <= set(logs) and logs["adaptive_weight"] > 0
    model.train_on_batch(slices(subject_slices))
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


def test_keras_file_resumes_adversarial_training_exactly(tmp_path, subject_slices):
    model = adversarial_vqvae(start=1)
    for _ in range(3):
        model.train_on_batch(slices(subject_slices))
    model.save(tmp_path / "adversarial.keras")
    loaded = keras.saving.load_model(tmp_path / "adversarial.keras")
    assert loaded.adversarial_weight == 0.5 and loaded.adversarial_start == 1
    assert loaded.discriminator_optimizer.iterations.numpy() == model.discriminator_optimizer.iterations.numpy()
    np.testing.assert_allclose(loaded.reconstruct(slices(subject_slices)), model.reconstruct(slices(subject_slices)))
    resumed = loaded.train_on_batch(slices(subject_slices), return_dict=True)
    continued = model.train_on_batch(slices(subject_slices), return_dict=True)
    for name in ("loss", "adversarial_loss", "discriminator_loss"):
        assert resumed[name] == pytest.approx(continued[name], rel=1e-5), name
    for a, b in zip(loaded.discriminator.get_weights(), model.discriminator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_negative_adversarial_settings_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        VQVAE(Encoder(8, 16, 1, 4), VectorQuantizer(16, 8), Decoder(8, 16, 1, 4), discriminator=PatchDiscriminator(),
              adversarial_weight=-1.0)
