"""The anatomy metrics answer known cases: identical sets are at distance 0, blurred slices are far, copies of
training slices are memorised."""

import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae.data.synthetic import SubjectSplit, make_split_arrays
from keras_vqvae.metrics.anatomy import AnatomyJudge, anatomy_metrics, frechet_distance, train_position_network


@pytest.fixture(scope="module")
def slices():
    """Virtual subjects at 64x64: split -> (images (n, 64, 64, 1) in [0, 1], slice positions (n,))."""
    arrays = make_split_arrays(SubjectSplit(8, 3, 3), seed=0, image_size=64)
    return {split: (pixels[..., None].astype(np.float32) / 255.0, positions)
            for split, (pixels, _, positions) in arrays.items()}


@pytest.fixture(scope="module")
def network(slices):
    images, positions = slices["train"]
    return train_position_network(images, positions, num_positions=32, epochs=8, seed=0)


def test_the_frechet_distance_of_two_gaussians_is_the_squared_distance_of_their_means_when_covariances_agree():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) + [2.0, 0.0, -1.0]
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.02)
    assert frechet_distance(a, 3.0 * a) == pytest.approx(3 * (3.0 - 1.0) ** 2, rel=0.02)  # Tr(1 + 9 - 2*3) per axis


def test_copies_of_the_test_slices_are_at_distance_zero_and_blurred_slices_far(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    copies, _ = anatomy_metrics(network, test, test, validate, validate, train)
    assert copies["fd"] == pytest.approx(0.0, abs=1e-3 * copies["fd_real"])
    assert copies["fd_real"] > 0 and copies["fd_reconstructed"] == pytest.approx(copies["fd_real"])
    blurred = tf.nn.avg_pool2d(tf.nn.avg_pool2d(validate, 4, 4, "VALID"), 1, 1, "VALID")
    blurred = tf.image.resize(blurred, (64, 64), method="bilinear").numpy()  # a quarter of the resolution
    scored, _ = anatomy_metrics(network, blurred, test, validate, blurred, train)
    assert scored["fd"] > 2 * scored["fd_real"] and scored["fd_ratio_to_reconstructed"] == pytest.approx(1.0)
    assert scored["reconstructed_position_confidence"] == pytest.approx(scored["position_confidence"])
    assert scored["reconstructed_position_confidence"] < scored["real_position_confidence"]  # blur costs confidence


def test_copies_of_training_slices_count_as_memorised_and_unseen_slices_do_not(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    copied, _ = anatomy_metrics(network, train[:len(test)], test, validate, validate, train)
    assert copied["memorised_fraction"] == 1.0 and copied["nearest_train_brain_ssim"] == pytest.approx(1.0)
    unseen, _ = anatomy_metrics(network, validate, test, validate, validate, train)
    assert unseen["memorised_fraction"] <= 0.05 and unseen["real_memorised_fraction"] <= 0.02


def test_the_position_network_knows_positions_it_has_seen_and_reports_predictions(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    metrics, predicted = anatomy_metrics(network, validate, test, validate, validate, train)
    assert predicted["generated"].shape == (len(validate),) and predicted["test"].shape == (len(test),)
    within_two = np.abs(predicted["generated"] - slices["validate"][1]) <= 2
    assert within_two.mean() > 0.3  # it learnt anatomy, not noise: 5 positions of 32 are 16% by chance
    assert 0 < metrics["position_confidence"] <= 1 and 0 < metrics["position_entropy_bits"] <= 5


def test_a_judge_of_several_sets_gives_what_anatomy_metrics_gives_each(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    blurred = tf.image.resize(tf.image.resize(validate, (16, 16)), (64, 64)).numpy()
    judge = AnatomyJudge(network, test, validate, blurred, train)
    for generated in (validate, train[:len(test)], blurred):
        alone, alone_predicted = anatomy_metrics(network, generated, test, validate, blurred, train)
        judged, predicted = judge(generated)
        assert judged == pytest.approx(alone)
        assert all(np.array_equal(predicted[name], alone_predicted[name]) for name in alone_predicted)
    without, _ = judge(blurred, memorisation=False)
    assert "memorised_fraction" not in without
    assert without == pytest.approx({key: value for key, value in alone.items() if key in without})
    with pytest.raises(ValueError, match="at least 96 generated slices"):
        judge(validate[:10])
