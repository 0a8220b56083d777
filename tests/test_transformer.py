import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import InputError
from keras_vqvae.priors import PRIOR_KINDS, CodeTransformer, make_sampler
from keras_vqvae.priors.autoregressive import ANY_POSITION

GRID = (4, 5)
SAMPLERS = [sampler.name for sampler in PRIOR_KINDS["transformer"].samplers]


def small_transformer(num_classes=0, unconditional_rate=0.0, layers=2, seed=0):
    keras.utils.set_random_seed(seed)
    return CodeTransformer(12, GRID, dim=16, layers=layers, heads=2, num_classes=num_classes,
                           unconditional_rate=unconditional_rate)


def test_each_output_depends_on_exactly_the_codes_before_it():
    prior = small_transformer(layers=3)
    codes = tf.random.stateless_uniform((3, *GRID), seed=(1, 2), maxval=12, dtype=tf.int32)
    logits = prior(codes).numpy().reshape(3, -1, 12)  # (batch, T, K)
    length = np.prod(GRID)
    for position in range(length):
        changed = codes.numpy().reshape(3, -1).copy()
        changed[:, position] = (changed[:, position] + 5) % 12
        after = prior(changed.reshape(3, *GRID)).numpy().reshape(3, -1, 12)
        np.testing.assert_array_equal(after[:, :position + 1], logits[:, :position + 1],
                                      err_msg=f"outputs up to {position} changed with the code at {position}")
        if position + 1 < length:  # the next output sees it: no position is blind to the one before
            assert not np.allclose(after[:, position + 1], logits[:, position + 1]), position


@pytest.mark.parametrize("num_classes, unconditional_rate, condition", [(0, 0.0, None), (3, 0.0, 2), (3, 0.2, None),
                                                                        (3, 0.2, ANY_POSITION)])
def test_both_samplers_draw_exactly_the_same_codes(num_classes, unconditional_rate, condition):
    prior = small_transformer(num_classes, unconditional_rate)
    drawn = {name: make_sampler(name, prior).sample(5, seed=7, temperature=1.5, batch_size=3, condition=condition)
             for name in SAMPLERS}
    assert drawn["reference"].shape == (5, *GRID) and drawn["reference"].dtype == np.int32
    assert len(np.unique(drawn["reference"])) > 6  # a near-uniform prior at temperature 1.5 uses many codes
    np.testing.assert_array_equal(drawn["cached"], drawn["reference"])


def test_a_samples_codes_depend_on_the_seed_and_its_index_only():
    sampler = make_sampler("cached", small_transformer())
    one_by_one = sampler.sample(3, seed=5, batch_size=1)
    np.testing.assert_array_equal(sampler.sample(3, seed=5, batch_size=3), one_by_one)
    np.testing.assert_array_equal(sampler.sample(2, seed=5), one_by_one[:2])
    assert not np.array_equal(sampler.sample(3, seed=6), one_by_one)


def toy_codes(count=96):
    """Code maps that are constant per label: label c -> every code is 2 c + 1."""
    labels = np.arange(count) % 3
    return np.broadcast_to((2 * labels + 1)[:, None, None], (count, *GRID)).astype(np.int32), labels


def test_a_conditional_transformer_with_a_null_class_learns_each_label_and_any_label():
    prior = small_transformer(num_classes=3, unconditional_rate=0.3)
    prior.compile(optimizer=keras.optimizers.Adam(0.01))
    codes, labels = toy_codes(192)
    history = prior.fit(codes, labels, batch_size=16, epochs=25, verbose=0).history
    assert history["nll"][-1] < 0.2 * history["nll"][0]
    sampler = make_sampler("cached", prior)
    for label in range(3):
        assert (sampler.sample(4, seed=label, condition=label) == 2 * label + 1).mean() > 0.95, label
    anything = sampler.sample(24, seed=9, condition=ANY_POSITION)  # whole maps of one label or another
    firsts = anything[:, 0, 0]
    assert np.isin(firsts, [1, 3, 5]).mean() > 0.9 and len(set(firsts)) >= 2
    assert (anything == firsts[:, None, None]).mean() > 0.9


def test_a_prior_without_a_null_class_refuses_any_position():
    with pytest.raises(InputError, match="condition -1 is out of range: this prior knows conditions 0 to 2"):
        make_sampler("cached", small_transformer(num_classes=3)).sample(1, condition=ANY_POSITION)


def test_the_null_class_replaces_the_set_fraction_of_labels():
    prior = small_transformer(num_classes=3, unconditional_rate=0.25)
    prior.compile(optimizer="adam")
    dropped = prior._with_null_labels(tf.zeros((4000,), tf.int32)).numpy()
    assert set(np.unique(dropped)) == {0, 3} and abs((dropped == 3).mean() - 0.25) < 0.03


@pytest.mark.parametrize("num_classes, unconditional_rate", [(0, 0.0), (4, 0.1)])
def test_the_transformer_round_trips_through_a_keras_file(tmp_path, num_classes, unconditional_rate):
    prior = small_transformer(num_classes, unconditional_rate)
    path = tmp_path / "transformer.keras"
    prior.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == prior.get_config()
    codes = tf.random.stateless_uniform((2, *GRID), seed=(3, 4), maxval=12, dtype=tf.int32)
    labels = tf.constant([1, 4 if unconditional_rate else 3]) if num_classes else None
    np.testing.assert_array_equal(loaded(codes, labels), prior(codes, labels))
