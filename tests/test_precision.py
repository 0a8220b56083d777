import keras
import numpy as np
import pytest

from keras_vqvae import VQVAE, Decoder, Encoder, GatedPixelCNN, VectorQuantizer
from keras_vqvae.training.distribute import precision
from keras_vqvae.errors import InputError


def test_a_bfloat16_vqvae_trains_on_the_cpu_and_gives_float32_outputs(subject_slices):
    images = (subject_slices[..., None] / 255.0 - 0.5).astype("float32")  # (8, 64, 64, 1) brain slices
    with precision("bfloat16"):
        keras.utils.set_random_seed(0)
        model = VQVAE(Encoder(8, 16, 1), VectorQuantizer(16, 8), Decoder(8, 16, 1), data_variance=0.08)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        assert model.encoder.compute_dtype == "bfloat16" and model.quantizer.compute_dtype == "float32"
        losses = model.fit(images, batch_size=4, epochs=10, verbose=0).history["loss"]
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert np.mean(losses[-3:]) < 0.75 * losses[0] and np.isfinite(losses).all(), losses
    assert model(images[:2]).dtype == "float32" and model.decode(model.encode(images[:2])).dtype == "float32"
    assert model.quantizer(model.encoder(images[:2]))[0].dtype == "float32"
    assert all(w.dtype == "float32" for w in model.trainable_weights)


def test_a_float16_prior_scales_its_loss_and_gives_float32_logits():
    codes = np.random.default_rng(0).integers(0, 16, (16, 8, 8)).astype("int32")
    with precision("float16"):
        prior = GatedPixelCNN(16, (8, 8), filters=8, layers=2, kernel_size=3)
        prior.compile(optimizer=keras.optimizers.Adam(1e-2))
        losses = prior.fit(codes, batch_size=8, epochs=4, verbose=0).history["loss"]
    assert isinstance(prior.optimizer, keras.optimizers.LossScaleOptimizer)
    assert losses[-1] < losses[0] and prior(codes[:2]).dtype == "float32"


def test_an_unknown_precision_is_named():
    with pytest.raises(InputError, match="unknown mixed precision 'float8'"):
        with precision("float8"):
            pass
