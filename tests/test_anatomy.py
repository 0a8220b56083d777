"""The anatomy metrics answer known cases: identical sets are at distance 0, blurred slices are far (the more
blurred, the farther), copies of training slices are memorised; and they agree with the network's own predictions
and with pairwise SSIM."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae.data.synthetic import SubjectSplit, make_split_arrays
from keras_vqvae.metrics.anatomy import AnatomyJudge, anatomy_metrics, frechet_distance, train_position_network
from keras_vqvae.metrics.generation import pairwise_ssim


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


def blurred(images: np.ndarray, factor: int) -> np.ndarray:
    """Images at 1/factor of their resolution, resized back."""
    small = tf.nn.avg_pool2d(images, factor, factor, "VALID")
    return tf.image.resize(small, images.shape[1:3], method="bilinear").numpy()


@pytest.mark.slow
def test_copies_of_the_test_slices_are_at_distance_zero_and_blurred_slices_far(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    lightly, heavily = blurred(validate, 2), blurred(validate, 4)  # the baseline reconstructions: lightly blurred
    copies, _ = anatomy_metrics(network, test, test, validate, lightly, train)
    assert copies["fd"] == pytest.approx(0.0, abs=1e-3 * copies["fd_real"])
    assert 0 < copies["fd_real"] < copies["fd_reconstructed"]  # each baseline from its own set
    scored, _ = anatomy_metrics(network, heavily, test, validate, lightly, train)
    assert scored["fd"] > 2 * scored["fd_real"]
    assert scored["fd"] > scored["fd_reconstructed"] and scored["fd_ratio_to_reconstructed"] > 1  # more blur, farther
    assert (scored["fd_real"], scored["fd_reconstructed"]) == pytest.approx((copies["fd_real"],
                                                                             copies["fd_reconstructed"]))
    assert scored["position_confidence"] < scored["real_position_confidence"]  # blur costs confidence


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_judge_of_several_sets_judges_each_alone_as_the_network_and_pairwise_ssim_see_it(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    judge = AnatomyJudge(network, test, validate, blurred(validate, 2), train)
    first, first_predicted = judge(validate)
    for other in (train[:len(test)], blurred(validate, 4)):
        judge(other)
    again, again_predicted = judge(validate)  # nothing of the sets judged in between stays behind
    assert again == pytest.approx(first)
    assert all(np.array_equal(again_predicted[name], first_predicted[name]) for name in first_predicted)
    judged = validate[:judge.count]
    probabilities = tf.nn.softmax(network(judged, training=False)).numpy()  # (count, 32), the network's own output
    np.testing.assert_array_equal(first_predicted["generated"], probabilities.argmax(axis=1))
    assert first["position_confidence"] == pytest.approx(probabilities.max(axis=1).mean(), rel=1e-5)
    nearest = pairwise_ssim(judged, train, region="brain").max(axis=1)
    assert first["nearest_train_brain_ssim"] == pytest.approx(nearest.mean(), rel=1e-5)
    without, _ = judge(validate, memorisation=False)
    assert "memorised_fraction" not in without
    assert without == pytest.approx({key: value for key, value in first.items() if key in without})
    with pytest.raises(ValueError, match=f"at least {judge.count} generated slices"):
        judge(validate[:10])


@pytest.mark.slow
def test_a_judge_given_more_slices_than_it_compares_takes_them_spread_over_the_positions(slices, network):
    test, validate, train = slices["test"][0], slices["validate"][0], slices["train"][0]
    judge = AnatomyJudge(network, test, validate, validate, train, count=32)
    by_position = validate[np.argsort(slices["validate"][1], kind="stable")]  # 96 slices, as generated: by position
    metrics, predicted = judge(by_position, memorisation=False)
    spread_subset = by_position[np.linspace(0, len(by_position) - 1, 32).round().astype(int)]
    assert metrics == pytest.approx(judge(spread_subset, memorisation=False)[0])
    spread_predictions = network(spread_subset, training=False).numpy().argmax(axis=1)
    np.testing.assert_array_equal(predicted["generated"], spread_predictions)  # the spread subset, not the first 32


def test_the_position_network_learns_from_the_batches_shuffling_the_images_themselves_would_give(monkeypatch):
    """Its batches are gathered by shuffled index (no copy of the images in a shuffle buffer), in the order of
    Dataset.shuffle over the images: the run's judge and its figures stay what they were."""
    rng = np.random.default_rng(1)
    images, positions = rng.random((40, 16, 16, 1)).astype(np.float32), rng.integers(0, 4, 40)
    seen = []
    monkeypatch.setattr(keras.Model, "fit", lambda self, batches, **_: seen.extend(batches))
    train_position_network(images, positions, num_positions=4, batch_size=16, seed=5)
    expected = tf.data.Dataset.from_tensor_slices((images, positions.astype(np.int32))).shuffle(40, seed=5).batch(16)
    assert len(seen) == 3
    for (batch, labels), (expected_batch, expected_labels) in zip(seen, expected):
        np.testing.assert_array_equal(batch, expected_batch)
        np.testing.assert_array_equal(labels, expected_labels)
