import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import VectorQuantizer


def quantizer_with_codebook(codebook, **kwargs):
    codebook = np.asarray(codebook, np.float32)
    layer = VectorQuantizer(len(codebook), codebook.shape[1], **kwargs)
    layer.build((None, codebook.shape[1]))
    layer.codebook.assign(codebook)
    if layer.ema_decay is not None:
        layer.ema_embedding_sum.assign(codebook)
    return layer


def test_nearest_code_lookup_and_shapes():
    layer = quantizer_with_codebook([[0.0, 0.0], [1.0, 1.0], [-2.0, 3.0]])
    inputs = np.array([[[0.1, -0.2], [0.8, 1.3]], [[-1.5, 2.0], [0.6, 0.6]]], np.float32)  # (2, 2, D=2)
    quantized, indices = layer(inputs)
    np.testing.assert_array_equal(indices, [[0, 1], [2, 1]])
    np.testing.assert_array_equal(layer.nearest_indices(inputs), indices)
    np.testing.assert_allclose(quantized, layer.lookup(indices))
    assert quantized.dtype == tf.float32 and indices.dtype == tf.int32


@pytest.mark.parametrize("ema_decay, expected", [(None, 0.025 + 0.25 * 0.025), (0.99, 0.25 * 0.025)])
def test_vq_loss_on_a_hand_computed_case(ema_decay, expected):
    # Nearest codes are (0, 0) and (1, 1); squared errors 0.01, 0.04, 0.01, 0.04: mean 0.025 for both terms.
    layer = quantizer_with_codebook([[0.0, 0.0], [1.0, 1.0]], beta=0.25, ema_decay=ema_decay)
    inputs = np.array([[0.1, 0.2], [0.9, 1.2]], np.float32)
    np.testing.assert_allclose(float(layer.vq_loss(inputs, *layer(inputs))), expected, rtol=1e-5)
    assert not layer.losses  # the model adds the loss: there is no second path through add_loss


def test_straight_through_gradient_copies_the_output_gradient_to_the_inputs():
    layer = quantizer_with_codebook([[0.0, 0.0], [1.0, 1.0]])
    inputs = tf.constant([[0.1, 0.2], [0.9, 1.2]])
    weights = tf.constant([[1.0, -2.0], [3.0, 0.5]])
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        quantized, _ = layer(inputs)
        value = tf.reduce_sum(quantized * weights)
    np.testing.assert_allclose(tape.gradient(value, inputs), weights)


def test_codebook_loss_trains_the_codebook_and_commitment_trains_the_inputs():
    layer = quantizer_with_codebook([[0.0, 0.0], [1.0, 1.0]], ema_decay=None, beta=0.25)
    inputs = tf.constant([[0.1, 0.2], [0.9, 1.2]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        loss = layer.vq_loss(inputs, *layer(inputs))  # as VQVAE computes it
    # d/d e_k of mean((z - e)^2) over the 4 numbers, and beta times the mirror image for the inputs.
    gradient = tf.convert_to_tensor(tape.gradient(loss, layer.codebook))
    np.testing.assert_allclose(gradient, [[-0.05, -0.1], [0.05, -0.1]], atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, inputs), 0.25 * np.array([[0.05, 0.1], [-0.05, 0.1]]), atol=1e-6)


def test_ema_update_follows_equations_6_to_8():
    decay = 0.5
    layer = quantizer_with_codebook([[0.0, 0.0], [4.0, 4.0]], ema_decay=decay, epsilon=1e-9, dead_code_steps=0)
    inputs = np.array([[0.2, 0.4], [0.6, 0.0], [3.0, 5.0]], np.float32)  # two vectors for code 0, one for code 1
    layer(inputs, training=True)
    cluster_size = decay * 1.0 + (1 - decay) * np.array([2.0, 1.0])  # eq. 6, from the initial size of 1
    embedding_sum = decay * np.array([[0.0, 0.0], [4.0, 4.0]]) + (1 - decay) * np.array([[0.8, 0.4], [3.0, 5.0]])
    np.testing.assert_allclose(layer.ema_cluster_size, cluster_size, rtol=1e-6)
    np.testing.assert_allclose(layer.codebook, embedding_sum / cluster_size[:, None], rtol=1e-5)  # eq. 8
    layer(inputs, training=False)  # evaluation never moves the codebook
    np.testing.assert_allclose(layer.codebook, embedding_sum / cluster_size[:, None], rtol=1e-5)


def test_codes_unused_at_the_first_step_start_from_the_batch():
    keras.utils.set_random_seed(0)  # a codebook where one code is the nearest to all the data, whatever ran before
    layer = VectorQuantizer(4, 2, dead_code_steps=3)
    inputs = np.random.default_rng(0).normal(10.0, 1.0, size=(64, 2)).astype(np.float32)  # far from every code
    layer(inputs, training=True)
    codebook = np.asarray(layer.codebook)
    restarted = np.asarray(layer.ema_cluster_size) == 1.0
    assert float(layer.restarts) == restarted.sum() == 3  # all but the one code nearest to the data
    for code in codebook[restarted]:
        assert np.min(np.abs(inputs - code).sum(axis=1)) < 1e-6  # each restarted code is one of the inputs


def test_dead_code_restarts_after_the_set_number_of_unused_steps_and_goes_where_the_error_is():
    layer = quantizer_with_codebook([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0]], dead_code_steps=2)
    layer.steps_unused.assign(np.zeros(3, np.float32))
    # Most vectors sit exactly on codes 0 and 1 (error 0); one is far from every code. Code 2 is never chosen.
    inputs = np.array([[0.0, 0.0]] * 30 + [[1.0, 0.0]] * 30 + [[10.0, -10.0]], np.float32)
    layer(inputs, training=True)
    assert float(layer.restarts) == 0 and float(layer.steps_unused[2]) == 1
    layer(inputs, training=True)
    assert float(layer.restarts) == 1
    np.testing.assert_allclose(layer.codebook[2], [10.0, -10.0])  # the only vector with a quantisation error
    assert float(layer.ema_cluster_size[2]) == 1.0 and float(layer.steps_unused[2]) == 0
    np.testing.assert_allclose(layer.ema_embedding_sum[2], [10.0, -10.0])


def test_distances_and_outputs_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = VectorQuantizer(8, 4)
        quantized, _ = layer(tf.cast(tf.random.normal((3, 5, 4)), tf.bfloat16), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert quantized.dtype == tf.float32 and layer.codebook.dtype == "float32"


def test_config_round_trip_and_bad_arguments():
    layer = VectorQuantizer(16, 3, beta=0.5, ema_decay=None, epsilon=1e-4, dead_code_steps=7, name="vq")
    clone = VectorQuantizer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(ema_decay=1.5)
    with pytest.raises(ValueError, match="channels"):
        VectorQuantizer(8, 4).build((None, 5))
