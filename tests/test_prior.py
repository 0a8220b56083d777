import dataclasses
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import InputError
from keras_vqvae.priors import (PRIOR_KINDS, CachingSampler, CodeTransformer, GatedBlock, GatedPixelCNN,
                                InpaintingSampler, LatentDCGAN, Sampler, make_sampler)
from keras_vqvae.priors.autoregressive import ANY_POSITION
from keras_vqvae.priors.settings import DCGANSettings
from keras_vqvae.priors.pixelcnn_sampling import PixelCNNSettings
from keras_vqvae.priors.transformer import TransformerSettings

SAMPLERS = [sampler.name for sampler in PRIOR_KINDS["pixelcnn"].samplers]

GRID = (5, 6)


def small_prior(num_classes=0, layers=4, kernel_size=5, seed=0):
    keras.utils.set_random_seed(seed)
    return GatedPixelCNN(12, GRID, filters=8, layers=layers, kernel_size=kernel_size, num_classes=num_classes)


def dependence_on_inputs(prior, row, column):
    """(h, w) bool: which input positions the logits at (row, column) have a non-zero gradient with respect to, for
    any of four random inputs (one input can leave every ReLU of the output head dead at a position)."""
    embedded = tf.random.stateless_normal((4, *GRID, prior.filters), seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        logits = prior.logits_from_embeddings(embedded)[:, row, column]  # (4, K)
        score = tf.reduce_sum(logits * tf.range(1.0, prior.num_embeddings + 1.0))
    gradient = tape.gradient(score, embedded)  # (4, h, w, F)
    return np.abs(gradient.numpy()).sum(axis=(0, -1)) > 0


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_each_output_depends_on_exactly_the_positions_before_it(kernel_size):
    prior = small_prior(layers=6, kernel_size=kernel_size)  # deep enough to see every earlier position: no blind spot
    h, w = GRID
    for position in range(h * w):
        row, column = divmod(position, w)
        earlier = (np.arange(h * w) < position).reshape(GRID)
        np.testing.assert_array_equal(dependence_on_inputs(prior, row, column), earlier,
                                      err_msg=f"output at {(row, column)}")


def test_the_first_layer_alone_sees_the_row_above_and_the_left_but_nothing_later():
    prior = small_prior(layers=1, kernel_size=3)
    seen = dependence_on_inputs(prior, 2, 3)
    assert seen[1, 2] and seen[1, 3] and seen[1, 4] and seen[2, 2]  # above-left, above, above-right, left
    assert not seen[2, 3:].any() and not seen[3:].any()


def test_the_condition_map_reaches_each_position_itself_and_the_codes_keep_their_order():
    """Eq. 5: the logits at p see the condition map at p itself (it is known before any code is drawn, so they may
    see all of it), and with a condition map they still see exactly the codes before p."""
    prior = small_prior(num_classes=3, layers=6)
    embedded = tf.random.stateless_normal((4, *GRID, prior.filters), seed=(1, 2))
    condition = tf.random.stateless_normal((4, *GRID, prior.condition_channels), seed=(3, 4))
    h, w = GRID
    for position in range(h * w):
        row, column = divmod(position, w)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([embedded, condition])
            logits = prior.logits_from_embeddings(embedded, condition)[:, row, column]  # (4, K)
            score = tf.reduce_sum(logits * tf.range(1.0, prior.num_embeddings + 1.0))
        seen_codes, seen_condition = (np.abs(tape.gradient(score, x).numpy()).sum(axis=(0, -1)) > 0
                                      for x in (embedded, condition))  # each (h, w)
        assert seen_condition[row, column], f"output at {(row, column)}"
        np.testing.assert_array_equal(seen_codes, (np.arange(h * w) < position).reshape(GRID),
                                      err_msg=f"output at {(row, column)}")


def test_each_label_has_its_own_condition_map_and_the_null_class_one_more():
    prior = GatedPixelCNN(12, GRID, filters=8, layers=2, num_classes=3, unconditional_rate=0.1, condition_channels=5)
    maps = prior.condition_map(tf.constant([0, 1, 2, 3]))  # the three positions and the null class
    assert maps.shape == (4, *GRID, 5)
    flat = maps.numpy().reshape(4, -1)
    assert all(not np.allclose(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))
    assert GatedPixelCNN(12, GRID, filters=8, layers=2).condition_map(None) is None


def test_codes_shape_logits_and_log_prob():
    prior = small_prior()
    codes = tf.random.stateless_uniform((3, *GRID), seed=(0, 1), maxval=12, dtype=tf.int32)
    logits = prior(codes)
    assert logits.shape == (3, *GRID, 12)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(codes, logits)
    np.testing.assert_allclose(prior.log_prob(codes), -tf.reduce_sum(cross_entropy, axis=[1, 2]), rtol=1e-5)


@pytest.mark.parametrize("num_classes, condition", [(0, None), (3, 2)])
def test_all_samplers_draw_exactly_the_same_codes(num_classes, condition):
    prior = small_prior(num_classes, layers=3, kernel_size=3)
    drawn = {name: make_sampler(name, prior).sample(5, seed=7, temperature=1.5, batch_size=3, condition=condition)
             for name in SAMPLERS}
    assert drawn["reference"].shape == (5, *GRID)
    assert drawn["reference"].dtype == np.int32
    assert len(np.unique(drawn["reference"])) > 6  # a near-uniform prior at temperature 1.5 uses many codes
    for name in ("compiled", "cached"):
        np.testing.assert_array_equal(drawn[name], drawn["reference"], err_msg=name)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_samples_codes_depend_on_the_seed_and_its_index_only(name):
    sampler = make_sampler(name, small_prior(num_classes=3, layers=2, kernel_size=3))
    one_by_one = sampler.sample(3, seed=5, batch_size=1, condition=1)
    np.testing.assert_array_equal(sampler.sample(3, seed=5, batch_size=3, condition=1), one_by_one)
    np.testing.assert_array_equal(sampler.sample(2, seed=5, batch_size=2, condition=1), one_by_one[:2])


def test_sampling_is_reproducible_and_depends_on_the_seed():
    sampler = make_sampler("cached", small_prior())
    first, again, other = (sampler.sample(4, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_low_temperature_draws_the_most_likely_code():
    prior = small_prior()
    codes = make_sampler("cached", prior).sample(2, seed=0, temperature=1e-7)
    logits = prior(codes).numpy()  # at (0, 0) every code ties: nothing comes before it and biases start at zero
    np.testing.assert_allclose(np.take_along_axis(logits, codes[..., None], -1)[..., 0], logits.max(-1), rtol=1e-6)


CODE_PROBABILITIES = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.1, 0.05, 0.02, 0.03, 0.02, 0.02, 0.01])
CHI_SQUARED_11_DOF_999 = 31.26  # the 99.9th percentile of the chi-squared distribution with 11 degrees of freedom


def chi_squared(codes: np.ndarray, probabilities: np.ndarray) -> float:
    """Pearson's statistic of the codes' frequencies against `probabilities`."""
    expected = probabilities * codes.size
    return float(np.sum(np.square(np.bincount(codes.ravel(), minlength=len(probabilities)) - expected) / expected))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_cached_sampler_draws_every_code_with_the_priors_probability(temperature):
    # a prior whose every position has the same known distribution, whatever the codes before it: only its output
    # layer's biases speak
    prior = small_prior(layers=2, kernel_size=3)
    prior.output_logits.kernel.assign(tf.zeros_like(prior.output_logits.kernel))
    prior.output_logits.bias.assign(np.log(CODE_PROBABILITIES).astype(np.float32))
    codes = make_sampler("cached", prior).sample(400, seed=0, temperature=temperature, batch_size=400)  # 12,000
    tempered = CODE_PROBABILITIES ** (1 / temperature) / np.sum(CODE_PROBABILITIES ** (1 / temperature))
    assert chi_squared(codes, tempered) < CHI_SQUARED_11_DOF_999
    shifted = np.roll(tempered, 1)  # what drawing one code off would give
    assert chi_squared(codes, shifted) > 10 * CHI_SQUARED_11_DOF_999
    flat = codes.reshape(len(codes), -1)  # the positions of a map are drawn independently here: no shared numbers
    assert np.mean(flat[:, 1:] == flat[:, :-1]) == pytest.approx(np.sum(tempered ** 2), abs=0.02)


def toy_codes(count=64):
    """Code maps that are constant per label: label c -> every code is 2 c + 1."""
    labels = np.arange(count) % 3
    return np.broadcast_to((2 * labels + 1)[:, None, None], (count, *GRID)).astype(np.int32), labels


def test_a_conditional_prior_learns_what_each_label_means():
    prior = small_prior(num_classes=3, layers=2, kernel_size=3)
    prior.compile(optimizer=keras.optimizers.Adam(0.02))
    codes, labels = toy_codes()
    history = prior.fit(codes, labels, batch_size=16, epochs=15, verbose=0).history
    assert history["nll"][-1] < 0.1 * history["nll"][0]
    np.testing.assert_allclose(history["nll"], np.array(history["loss"]) / np.log(2.0), rtol=1e-5)  # bits per code
    for label in range(3):
        drawn = make_sampler("cached", prior).sample(4, seed=label, condition=label)
        assert (drawn == 2 * label + 1).mean() > 0.95, label


def test_a_prior_with_a_null_class_also_draws_any_label():
    keras.utils.set_random_seed(0)
    prior = GatedPixelCNN(12, GRID, filters=8, layers=2, kernel_size=3, num_classes=3, unconditional_rate=0.3)
    prior.compile(optimizer=keras.optimizers.Adam(0.02))
    codes, labels = toy_codes(192)
    prior.fit(codes, labels, batch_size=16, epochs=15, verbose=0)
    sampler = make_sampler("cached", prior)
    assert (sampler.sample(4, seed=0, condition=2) == 5).mean() > 0.95
    anything = sampler.sample(24, seed=9, condition=ANY_POSITION)  # whole maps of one label or another
    firsts = anything[:, 0, 0]
    assert np.isin(firsts, [1, 3, 5]).mean() > 0.9 and len(set(firsts)) >= 2
    assert (anything == firsts[:, None, None]).mean() > 0.9


def test_conditioning_changes_the_logits():
    prior = small_prior(num_classes=3)
    codes = tf.zeros((2, *GRID), tf.int32)
    assert not np.allclose(prior(codes, tf.constant([0, 0])), prior(codes, tf.constant([1, 2])))


def test_evaluate_reports_the_nll_in_bits_and_the_accuracy_of_the_most_likely_code():
    # a prior whose every position has the same known distribution, whatever the codes before it: only its output
    # layer's biases speak, and code 3 is the most likely
    prior = small_prior(layers=2, kernel_size=3)
    prior.output_logits.kernel.assign(tf.zeros_like(prior.output_logits.kernel))
    biases = np.linspace(-1.0, 1.0, 12).astype(np.float32)
    biases[3] = 2.0
    prior.output_logits.bias.assign(biases)
    prior.compile()
    codes, labels = toy_codes(8)  # maps of code 1, 3 and 5, by label; three of the eight maps are of code 3
    results = prior.evaluate(codes, batch_size=4, return_dict=True, verbose=0)
    log_probabilities = biases - np.log(np.sum(np.exp(biases)))  # (K,) nats
    nats = -np.mean(log_probabilities[codes])
    assert results == pytest.approx({"loss": nats, "nll": nats / np.log(2.0), "accuracy": np.mean(labels == 1)},
                                    rel=1e-5)


def test_a_conditional_prior_refuses_data_without_labels():
    prior = small_prior(num_classes=3)
    prior.compile()
    with pytest.raises(ValueError, match="num_classes=3: give it \\(codes, labels\\) pairs"):
        prior.evaluate(toy_codes(8)[0], batch_size=4, verbose=0)


@pytest.mark.parametrize("num_classes", [0, 4])
def test_prior_round_trips_through_a_keras_file(tmp_path, num_classes):
    prior = small_prior(num_classes)
    path = tmp_path / "prior.keras"
    prior.save(path)
    loaded = keras.saving.load_model(path)
    codes = tf.random.stateless_uniform((2, *GRID), seed=(3, 4), maxval=12, dtype=tf.int32)
    labels = tf.constant([1, 3]) if num_classes else None
    np.testing.assert_array_equal(loaded(codes, labels), prior(codes, labels))
    assert loaded.get_config() == prior.get_config()
    np.testing.assert_array_equal(make_sampler("cached", loaded).sample(2, condition=1 if num_classes else None),
                                  make_sampler("cached", prior).sample(2, condition=1 if num_classes else None))


def test_gated_block_weights_and_config():
    block = GatedBlock(8, 5, condition_channels=3)
    block.build()
    f = 8
    vertical = 3 * 5 * f * 2 * f + 2 * f  # (n + 1) x k kernel, n = 2
    horizontal = 1 * 3 * f * 2 * f + 2 * f  # 1 x (n + 1) kernel
    vertical_to_horizontal = 2 * f * 2 * f + 2 * f
    residual_and_skip = 2 * (f * f + f)
    conditions = 2 * 3 * 2 * f  # V_v and V_h: 1 x 1 convolutions of the 3 condition channels, no bias
    assert block.count_params() == vertical + horizontal + vertical_to_horizontal + residual_and_skip + conditions
    assert GatedBlock.from_config(block.get_config()).get_config() == block.get_config()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=0), "number of samples must be a positive whole number, got 0"),
    (dict(num_samples=2, batch_size=0), "batch size must be a positive whole number, got 0"),
    (dict(num_samples=2, temperature=0.0), "temperature must be positive"),
    (dict(num_samples=2, seed=-1), "seed must be between 0 and"),
    (dict(num_samples=2, condition=3), "condition 3 is out of range: this prior knows conditions 0 to 2"),
])
def test_bad_sampling_arguments_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        make_sampler("cached", small_prior(num_classes=3)).sample(**kwargs)


def test_an_unconditional_prior_refuses_a_condition():
    with pytest.raises(InputError, match="trained without a condition"):
        make_sampler("reference", small_prior()).sample(1, condition=0)


def test_an_unknown_sampler_is_named():
    with pytest.raises(InputError, match="unknown sampler 'fast': choose one of reference, compiled, cached"):
        make_sampler("fast", small_prior())


@pytest.mark.parametrize("base, missing", [(Sampler, "_draw"), (InpaintingSampler, "_draw"), (CachingSampler, "_fill")])
def test_a_sampler_that_implements_nothing_cannot_be_made(base, missing):
    class Nothing(base):
        name = "nothing"

    with pytest.raises(TypeError, match=f"abstract method {missing}"):
        Nothing(small_prior(layers=1))


@pytest.mark.parametrize("model_class, settings_class, shared", [
    (GatedPixelCNN, PixelCNNSettings, {"filters", "layers", "kernel_size", "unconditional_rate"}),
    (CodeTransformer, TransformerSettings, {"dim", "layers", "heads", "unconditional_rate"}),
    (LatentDCGAN, DCGANSettings, {"noise_dim", "filters", "snapping"}),
])
def test_a_priors_defaults_are_its_command_lines(model_class, settings_class, shared):
    parameters = inspect.signature(model_class.__init__).parameters
    assert {field.name for field in dataclasses.fields(settings_class)} & set(parameters) == shared
    settings = settings_class()
    assert {name: parameters[name].default for name in shared} == {name: getattr(settings, name) for name in shared}


@pytest.mark.parametrize("kwargs", [dict(kernel_size=4), dict(kernel_size=1)])
def test_even_or_tiny_kernels_are_refused(kwargs):
    with pytest.raises(ValueError, match="kernel_size must be odd and at least 3"):
        GatedPixelCNN(12, GRID, filters=8, layers=1, **kwargs)
