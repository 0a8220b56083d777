"""Anomaly maps: scoring codes, healing around the kept ones, the maps, their metrics, the command, the endpoint."""

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vqvae import InputError, detect
from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, anomaly_maps, signed_residual, top_mean
from keras_vqvae.anomaly_masks import MaskSettings, anomaly_masks
from keras_vqvae.calibration import calibrate_threshold
from keras_vqvae.data.datasets import to_input_size
from keras_vqvae.data import make_dataset, read_images
from keras_vqvae.data import __main__ as data_command
from keras_vqvae.data.lesions import LESION_KINDS, donor_index, insert_lesions, lesioned_arrays
from keras_vqvae.data.synthetic import SubjectSplit
from keras_vqvae.metrics.detection import auprc, auroc, best_dice, detection_metrics, dice
from keras_vqvae.priors import PRIOR_KINDS, CodeTransformer, GatedPixelCNN, Sampler, make_sampler
from keras_vqvae.priors.sampler import sample_seeds
from keras_vqvae.savedmodel import export_run
from keras_vqvae import plots
from keras_vqvae.training import RunFolder
from conftest import copy_run

GRID = (4, 5)
PRIORS = {
    "pixelcnn": lambda: GatedPixelCNN(12, GRID, filters=8, layers=3, kernel_size=3, num_classes=3,
                                      unconditional_rate=0.2),
    "transformer": lambda: CodeTransformer(12, GRID, dim=16, layers=2, heads=2, num_classes=3, unconditional_rate=0.2),
}


# --- healing: every sampler draws around given codes ------------------------------------------------------------

@pytest.mark.parametrize("kind", PRIORS)
def test_every_sampler_keeps_the_given_codes_and_redraws_the_rest_given_them_alike(kind):
    keras.utils.set_random_seed(0)
    prior = PRIORS[kind]()
    seeds, labels, temperature = sample_seeds(3, 0, 4), tf.constant([0, 1, 2, 3]), tf.constant(1.5)  # 3: any
    given = tf.random.stateless_uniform((4, *GRID), seed=(5, 6), maxval=12, dtype=tf.int32)
    keep = tf.random.stateless_uniform((4, *GRID), seed=(7, 8)) < 0.6
    drawn = {sampler.name: make_sampler(sampler.name, prior).draw(seeds, temperature, labels, given=(given, keep))
             for sampler in PRIOR_KINDS[kind].samplers}
    reference = drawn["reference"].numpy()
    for name, codes in drawn.items():  # the fast samplers condition on the kept codes exactly as the reference does
        np.testing.assert_array_equal(codes, reference, err_msg=name)
    np.testing.assert_array_equal(reference[keep.numpy()], given.numpy()[keep.numpy()])
    assert (reference[~keep.numpy()] != given.numpy()[~keep.numpy()]).mean() > 0.5  # 12 near-uniform codes
    sampler = make_sampler("cached", prior)
    nothing_kept = sampler.draw(seeds, temperature, labels, given=(given, tf.zeros_like(keep)))
    np.testing.assert_array_equal(nothing_kept, sampler.draw(seeds, temperature, labels))  # the same random numbers
    all_kept = sampler.draw(seeds, temperature, labels, given=(given, tf.ones_like(keep)))
    np.testing.assert_array_equal(all_kept, given)


class WholeMapSampler(Sampler):
    """Draws whole maps at once (all zeros), so it cannot draw around given codes."""

    name = "whole"

    def _draw(self, seeds, temperature, labels, advance):
        return tf.zeros((len(seeds), *self.prior.grid_shape), tf.int32)


def test_a_prior_whose_sampler_cannot_draw_around_given_codes_makes_no_anomaly_maps(monkeypatch):
    whole = dataclasses.replace(PRIOR_KINDS["pixelcnn"], samplers=(WholeMapSampler,), default_sampler="whole")
    monkeypatch.setitem(PRIOR_KINDS, "pixelcnn", whole)
    with pytest.raises(InputError) as refusal:
        AnomalyDetector(None, PRIORS["pixelcnn"](), 1.0, AnomalySettings())  # refused before it needs a VQ-VAE
    message = str(refusal.value)
    assert message.startswith("the pixelcnn prior has no sampler that redraws codes around kept ones, so it cannot "
                              "make anomaly maps: train a pixelcnn or transformer prior") and "\n" not in message


@pytest.mark.parametrize("kind", PRIORS)
def test_code_nll_is_each_codes_cross_entropy_in_bits_and_its_mean_the_nll_metric(kind):
    keras.utils.set_random_seed(0)
    prior = PRIORS[kind]()
    prior.compile(optimizer="adam")
    codes = tf.random.stateless_uniform((6, *GRID), seed=(1, 2), maxval=12, dtype=tf.int32)
    labels = tf.constant([0, 1, 2, 0, 1, 2])
    nll = prior.code_nll(codes, labels).numpy()
    assert nll.shape == (6, *GRID) and (nll > 0).all()
    np.testing.assert_allclose(nll.sum(axis=(1, 2)), -prior.log_prob(codes, labels).numpy() / np.log(2), rtol=1e-5)
    metrics = prior.evaluate(codes, labels, batch_size=6, verbose=0, return_dict=True)
    np.testing.assert_allclose(nll.mean(), metrics["nll"], rtol=1e-5)


def test_the_threshold_is_the_percentile_of_the_healthy_codes_nll():
    keras.utils.set_random_seed(0)
    prior = PRIORS["pixelcnn"]()
    codes = np.random.default_rng(0).integers(0, 12, (40, *GRID)).astype(np.int32)
    positions = np.arange(40) % 3
    calibration = calibrate_threshold(prior, codes, positions, 90.0, batch_size=7)
    nll = prior.code_nll(codes, positions).numpy()
    assert calibration["threshold"] == pytest.approx(np.percentile(nll, 90.0), rel=1e-6)
    assert calibration["codes"] == nll.size and calibration["percentile"] == 90.0
    assert (nll > calibration["threshold"]).mean() == pytest.approx(0.10, abs=0.01)
    assert calibration["nll_mean"] == pytest.approx(nll.mean(), rel=1e-5)
    without_positions = calibrate_threshold(prior, codes, None, 90.0)  # any position: another condition
    assert without_positions["threshold"] != pytest.approx(calibration["threshold"], rel=1e-4)


# --- the maps, on the tiny trained run --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """The tiny run's test split (subject 5) with bright lesions, and their masks."""
    root = tmp_path_factory.mktemp("lesions")
    assert data_command.main(["make-lesions", str(root), "--subjects", "3,1,1", "--kind", "bright"]) == 0
    return root / "keras_png_slices_test", root / "keras_png_slices_mask_test"


@pytest.fixture(scope="module")
def models(trained_run):
    return RunFolder(trained_run).load("pixelcnn")


def model_images(folder, image_size):
    slices, _ = read_images(folder)
    images = np.concatenate([batch.numpy() for batch in make_dataset(slices, image_size, 16)]) + 0.5
    return images, np.array(slices.slice_numbers), [Path(file).name for file in slices.files]


def test_healing_redraws_exactly_the_codes_above_the_threshold_and_keeps_the_others(models, lesions):
    config, vqvae, prior = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    codes = vqvae.encode(images[:6] - 0.5).numpy()
    nll = prior.code_nll(codes, positions[:6]).numpy()
    threshold = float(np.percentile(nll, 80))
    result = anomaly_maps(vqvae, prior, images[:6], threshold, positions[:6], AnomalySettings(draws=3))
    np.testing.assert_allclose(result.nll, nll, rtol=1e-5)
    np.testing.assert_array_equal(result.redrawn, nll > threshold)
    assert result.healed_codes.shape == (6, 3, *codes.shape[1:])
    for draw in range(3):
        healed = result.healed_codes[:, draw]
        np.testing.assert_array_equal(healed[~result.redrawn], codes[~result.redrawn])
    assert (result.healed_codes[:, 0][result.redrawn] != codes[result.redrawn]).any()
    assert not np.array_equal(result.healed_codes[:, 0], result.healed_codes[:, 1])  # the draws differ


def test_a_second_healing_round_redraws_exactly_the_healed_codes_still_above_the_threshold(models, lesions):
    config, vqvae, prior = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    nll = prior.code_nll(vqvae.encode(images[:6] - 0.5), positions[:6]).numpy()
    threshold = float(np.percentile(nll, 80))
    one, two = (anomaly_maps(vqvae, prior, images[:6], threshold, positions[:6],
                             AnomalySettings(draws=2, rounds=r, smoothing=0.0)) for r in (1, 2))  # maps unsmoothed
    np.testing.assert_array_equal(two.redrawn, one.redrawn)  # what the first round scores is the same
    first_round = one.healed_codes.reshape(-1, *nll.shape[1:])  # (6 * 2, h, w), the first round's healed maps
    still_unlikely = prior.code_nll(first_round, np.repeat(positions[:6], 2)).numpy() > threshold
    assert still_unlikely.any() and not still_unlikely.all()
    second_round = two.healed_codes.reshape(first_round.shape)
    np.testing.assert_array_equal(second_round[~still_unlikely], first_round[~still_unlikely])
    assert (second_round[still_unlikely] != first_round[still_unlikely]).any()
    grown = tf.nn.max_pool2d((one.redrawn | still_unlikely.reshape(6, 2, *nll.shape[1:]).any(axis=1))[
        ..., None].astype(np.float32), 3, 1, "SAME").numpy()[..., 0]  # the map reaches codes of either round
    reached = np.repeat(np.repeat(grown, images.shape[1] // nll.shape[1], 1), images.shape[2] // nll.shape[2], 2)
    assert (two.maps[reached == 0] == 0).all() and (two.maps[(reached > 0) & (one.maps == 0)] > 0).any()


def test_the_signed_residual_keeps_the_departures_of_its_sign_only():
    images = tf.constant([[0.2, 0.5, 0.9]])
    healed = tf.constant([[0.5, 0.5, 0.4]])
    np.testing.assert_allclose(signed_residual(images, healed, "both").numpy(), [[0.3, 0.0, 0.5]], atol=1e-7)
    np.testing.assert_allclose(signed_residual(images, healed, "bright").numpy(), [[0.0, 0.0, 0.5]], atol=1e-7)
    np.testing.assert_allclose(signed_residual(images, healed, "dark").numpy(), [[0.3, 0.0, 0.0]], atol=1e-7)
    with pytest.raises(InputError, match="--sign grey is out of range \\(it must be one of both, bright, dark\\)"):
        AnomalySettings(sign="grey")


def test_the_bright_and_dark_maps_of_the_same_draws_add_up_to_the_maps_of_both_signs(models, lesions):
    config, vqvae, prior = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    threshold = float(np.percentile(prior.code_nll(vqvae.encode(images[:6] - 0.5), positions[:6]), 80))
    both, bright, dark = (anomaly_maps(vqvae, prior, images[:6], threshold, positions[:6],
                                       AnomalySettings(draws=2, sign=sign)) for sign in ("both", "bright", "dark"))
    np.testing.assert_array_equal(bright.healed_codes, both.healed_codes)  # the same draws: only the residual differs
    np.testing.assert_allclose(bright.maps + dark.maps, both.maps, atol=1e-6)  # |d| = max(d, 0) + max(-d, 0)
    np.testing.assert_allclose(bright.residual_maps + dark.residual_maps, both.residual_maps, atol=1e-6)
    assert (bright.maps > 1e-3).any() and (dark.maps > 1e-3).any()
    assert not np.allclose(bright.maps, dark.maps)


def test_a_slice_whose_codes_are_all_kept_heals_to_its_reconstruction_and_has_an_empty_map(models, lesions):
    config, vqvae, prior = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    result = anomaly_maps(vqvae, prior, images[:4], 1e6, positions[:4])
    assert not result.redrawn.any()
    for draw in range(result.healed.shape[1]):
        np.testing.assert_allclose(result.healed[:, draw], result.reconstructions, atol=1e-6)
    assert (result.maps == 0).all() and (result.scores == 0).all()
    assert (result.residual_maps > 0).any()  # the plain residual still shows the reconstruction's error


def test_any_prior_that_scores_codes_serves_a_transformer_too(models, lesions):
    config, vqvae, _ = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    keras.utils.set_random_seed(0)
    grid = tuple(vqvae.encode(images[:1] - 0.5).shape[1:])
    transformer = CodeTransformer(vqvae.quantizer.num_embeddings, grid, dim=16, layers=1, heads=2, num_classes=32,
                                  unconditional_rate=0.1)
    codes = vqvae.encode(images[:3] - 0.5).numpy()
    nll = transformer.code_nll(codes, positions[:3]).numpy()
    threshold = float(np.percentile(nll, 75))
    result = anomaly_maps(vqvae, transformer, images[:3], threshold, positions[:3], AnomalySettings(draws=2))
    np.testing.assert_array_equal(result.redrawn, nll > threshold)
    kept = np.broadcast_to(~result.redrawn[:, None], result.healed_codes.shape)
    np.testing.assert_array_equal(result.healed_codes[kept], np.repeat(codes[:, None], 2, axis=1)[kept])
    assert (result.maps > 0).any() and result.maps.shape == images[:3, ..., 0].shape


def test_maps_depend_on_the_seed_and_the_slices_number_not_on_the_batch(models, lesions):
    config, vqvae, prior = models
    images, positions, _ = model_images(lesions[0], config.image_size)
    threshold = float(np.percentile(prior.code_nll(vqvae.encode(images - 0.5), positions), 70))
    whole = anomaly_maps(vqvae, prior, images[:5], threshold, positions[:5], batch_size=5)
    piecewise = anomaly_maps(vqvae, prior, images[:5], threshold, positions[:5], batch_size=2)
    np.testing.assert_array_equal(whole.maps, piecewise.maps)
    other_seed = anomaly_maps(vqvae, prior, images[:5], threshold, positions[:5], AnomalySettings(seed=1))
    assert not np.array_equal(other_seed.healed_codes, whole.healed_codes)


def window_extreme(masks: np.ndarray, side: int, reduce, fill: float) -> np.ndarray:
    """Each pixel of masks (n, H, W) replaced by `reduce` (np.max: dilation, np.min: erosion) over the side x side
    window around it; the window's part outside the image counts as `fill`."""
    padded = np.pad(masks, ((0, 0), (side // 2,) * 2, (side // 2,) * 2), constant_values=fill)
    return reduce(np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(1, 2)), axis=(-2, -1))


def gaussian_smoothed(maps: np.ndarray, sigma: float) -> np.ndarray:
    """maps (n, H, W) convolved with a sampled, normalised Gaussian of `sigma` pixels (3 sigma each side), zeros
    beyond the image."""
    offsets = np.arange(-np.ceil(3 * sigma), np.ceil(3 * sigma) + 1)
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    along_rows = np.apply_along_axis(lambda line: np.convolve(line, kernel, "same"), 1, maps)
    return np.apply_along_axis(lambda line: np.convolve(line, kernel, "same"), 2, along_rows)


def test_the_map_is_the_healed_residual_inside_the_eroded_brain_near_redrawn_codes_smoothed(models):
    # a hand-made slice: a grey disc of brain with a bright square in it, on black; worked out again with numpy
    config, vqvae, prior = models
    size = config.image_size
    rows, columns = np.mgrid[:size, :size]
    disc = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (0.4 * size) ** 2
    images = np.where(disc, 0.45, 0.0)[None, ..., None].repeat(2, axis=0).astype(np.float32)
    images[0, size // 2:size // 2 + 5, size // 3:size // 3 + 5] = 1.0  # the lesion of the first slice
    nll = prior.code_nll(vqvae.encode(images - 0.5), np.array([3, 3])).numpy()
    settings = AnomalySettings(draws=3, smoothing=1.5)
    result = anomaly_maps(vqvae, prior, images, float(np.percentile(nll, 75)), np.array([3, 3]), settings)
    assert result.redrawn.any() and (~result.redrawn).any()
    factor = size // nll.shape[1]
    np.testing.assert_allclose(result.healed, vqvae.decode(result.healed_codes.reshape(-1, *nll.shape[1:])).numpy()
                               .reshape(result.healed.shape) + 0.5, atol=1e-6)

    x = images[..., 0]  # (2, S, S)
    brain = window_extreme((x > 0.5 / 255).astype(float), 5, np.min, fill=1.0)  # foreground eroded by 2 pixels
    near_redrawn = window_extreme(result.redrawn.astype(float), 3, np.max, fill=0.0)  # grown by one code
    near_redrawn = np.kron(near_redrawn, np.ones((factor, factor)))  # each code over its pixels
    residual = np.abs(x[:, None] - result.healed[..., 0]).mean(axis=1)  # mean over the draws of |x - healed|
    np.testing.assert_allclose(result.maps, gaussian_smoothed(residual * brain * near_redrawn, 1.5), atol=1e-5)
    plain = np.abs(x - result.reconstructions[..., 0]) * brain
    np.testing.assert_allclose(result.residual_maps, gaussian_smoothed(plain, 1.5), atol=1e-5)


def test_a_slices_score_is_the_mean_of_its_maps_top_percent_inside_the_brain():
    brain = np.zeros((2, 20, 20, 1), np.float32)
    brain[0, :10, :15] = 1  # 150 brain pixels: the top 1% is 2 of them (rounded up)
    brain[1, :2, :2] = 1  # 4 brain pixels: at least one
    maps = np.zeros_like(brain)
    maps[0, 0, :4, 0] = [0.9, 0.7, 0.5, 0.1]
    maps[1, 1, 1, 0] = 0.3
    np.testing.assert_allclose(top_mean(tf.constant(maps), tf.constant(brain)), [0.8, 0.3], rtol=1e-6)


def test_maps_go_back_onto_non_square_slices_as_the_pipeline_padded_them():
    model_size = np.zeros((1, 16, 16), np.float32)
    model_size[:, 4:12, :8] = 1.0  # the left half of a 32 x 64 slice, padded to 64 x 64 and shrunk to 16 x 16
    back = to_input_size(model_size, 32, 64)
    assert back.shape == (1, 32, 64)
    assert back[0, 4:28, 4:28].min() > 0.99 and back[0, 4:28, 36:60].max() < 0.01


# --- the metrics -----------------------------------------------------------------------------------------------

def test_the_metrics_give_the_answers_worked_out_by_hand():
    scores, truth = np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False])
    # thresholds 0.9, 0.8, 0.7, 0.6: (TP, FP) = (1, 0), (1, 1), (2, 1), (2, 2); precision 1, 1/2, 2/3, 1/2
    assert auprc(scores, truth) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # recall steps of 1/2 at 0.9 and 0.7
    assert best_dice(scores, truth) == pytest.approx((2 * 2 / (2 * 2 + 1 + 0), 0.7))  # 0.8 at threshold 0.7
    assert auroc(scores, truth) == pytest.approx(0.75)  # 3 of the 4 (lesion, healthy) pairs in order
    tied = np.array([0.5, 0.5, 0.2, 0.2])  # equal scores are one threshold: (1, 1) then (2, 2)
    assert auprc(tied, truth) == pytest.approx(0.5)
    assert best_dice(tied, truth)[0] == pytest.approx(2 * 2 / (4 + 2))
    assert auroc(tied, truth) == pytest.approx(0.5)
    assert auprc(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == pytest.approx(1.0)
    metrics = detection_metrics(scores, truth, np.array([1.0, 0.0]), np.array([True, False]))
    assert metrics["slice_auroc"] == 1.0 and metrics["best_dice"] == pytest.approx(0.8)
    assert "slice_auroc" not in detection_metrics(scores, truth, np.array([1.0, 2.0]), np.array([True, True]))


def test_the_dice_of_a_mask_made_at_a_threshold_agrees_with_the_best_dice_at_that_threshold():
    scores, truth = np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False])
    best, threshold = best_dice(scores, truth)
    assert dice(scores >= threshold, truth) == pytest.approx(best)
    assert dice(scores > 0.85, truth) == pytest.approx(2 * 1 / (1 + 2))  # TP 1, FP 0, FN 1
    assert dice(np.zeros(4, bool), truth) == 0.0 and dice(np.zeros(4, bool), np.zeros(4, bool)) == 1.0


def brute_force_auprc_and_dice(scores, truth):
    """Average precision and best Dice by trying every distinct score as a threshold: at each, the pixels marked
    (scores >= threshold) and the lesion pixels among them, counted by binary search in the sorted scores."""
    thresholds = np.unique(scores)[::-1]  # highest first
    marked = scores.size - np.searchsorted(np.sort(scores), thresholds, side="left")
    true_positives = truth.sum() - np.searchsorted(np.sort(scores[truth]), thresholds, side="left")
    recall = true_positives / truth.sum()
    average_precision = np.sum(np.diff(np.r_[0.0, recall]) * true_positives / marked)
    dice = np.max(2 * true_positives / (marked + truth.sum()))
    return average_precision, dice


# --- the command -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def from_the_function(trained_run, models, lesions):
    """The lesioned slices at the model's size (n, S, S, 1), their positions and file names, and their anomaly maps
    made by `anomaly_maps` as the command makes them (the run's threshold, 2 draws)."""
    config, vqvae, prior = models
    images, positions, names = model_images(lesions[0], config.image_size)
    threshold = RunFolder(trained_run).read_anomaly_calibration("pixelcnn")[0]["threshold"]
    return images, positions, names, anomaly_maps(vqvae, prior, images, threshold, positions, AnomalySettings(draws=2))


@pytest.fixture(scope="module")
def detecting_run(trained_run, tmp_path_factory):
    """A copy of the tiny run for the commands that keep a calibration in it (the masks' of other settings)."""
    return copy_run(trained_run, tmp_path_factory.mktemp("detecting"))


@pytest.fixture(scope="module")
def detected(detecting_run, lesions, tmp_path_factory):
    out = tmp_path_factory.mktemp("detected") / "out"
    assert detect.main([str(detecting_run), "--images", str(lesions[0]), "--masks", str(lesions[1]), "--out",
                        str(out), "--draws", "2", "--median-size", "3", "--min-pixels", "4", "--quiet"]) == 0
    return out


def test_the_command_writes_overlays_maps_scores_a_summary_and_metrics(detected, lesions, from_the_function,
                                                                      tmp_path):
    names = sorted(path.name for path in lesions[0].iterdir())
    assert sorted(path.name for path in (detected / "overlays").iterdir()) == names
    maps = np.load(detected / "maps.npz")
    assert sorted(maps.files) == names
    assert all(maps[name].shape == (256, 256) and maps[name].dtype == np.float32 for name in names)
    with open(detected / "scores.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["file"] for row in rows] == names
    # a slice's score: the mean of the highest 1% (at least one) of its map's values inside its eroded brain
    images, _, names, result = from_the_function
    brain = window_extreme((images[..., 0] > 0.5 / 255).astype(float), 5, np.min, fill=1.0) > 0  # (n, S, S)
    expected = [np.sort(m[inside])[::-1][:max(1, math.ceil(0.01 * inside.sum()))].mean()
                for m, inside in zip(result.maps, brain)]
    np.testing.assert_allclose([float(row["score"]) for row in rows], expected, rtol=1e-5)  # written to 6 digits
    assert np.count_nonzero(expected) > 0  # some slices had codes redrawn: not only empty maps
    # the summary: the 8 highest-scoring slices with their maps on one colour scale, and a histogram of the scores
    with Image.open(detected / "summary.png") as picture:
        assert picture.format == "PNG" and picture.width == 860  # 8.6 inches at 100 dpi
        summary = np.asarray(picture.convert("RGB")).astype(int)
    again = tmp_path / "summary.png"
    plots.plot_anomaly_summary(images[..., 0], result.maps, result.scores, names,
                               max(float(np.percentile(result.maps, 99.9)), 1e-6), again,
                               f"the 8 highest-scoring of 32 slices of {lesions[0]} (pixelcnn prior, threshold "
                               f"{result.threshold:.2f} bits)")
    np.testing.assert_array_equal(summary, np.asarray(Image.open(again).convert("RGB")).astype(int))
    coloured = summary.max(axis=-1) - summary.min(axis=-1) > 60  # not grey: a map over a slice, or a histogram bar
    assert coloured[:summary.shape[0] // 2, :summary.shape[1] // 3].sum() > 100  # the first slice's map, top left
    assert coloured[2 * summary.shape[0] // 3:].sum() > 100  # the histogram's bars, below them
    metrics = json.loads((detected / "metrics.json").read_text())
    assert set(metrics["reconstruction"]) == {"auprc", "best_dice", "best_dice_threshold", "slice_auroc"}
    assert set(metrics["healed"]) == {*metrics["reconstruction"], "dice"}


def test_the_command_writes_masks_at_the_threshold_calibrated_on_healthy_validation_slices(detected, detecting_run,
                                                                                           lesions, from_the_function):
    kept = RunFolder(detecting_run).read_anomaly_calibration("pixelcnn")[0]
    assert kept["masks"]["draws"] == AnomalySettings().draws  # the run's own calibration stays
    calibration, = [masks for masks in kept["other_masks"] if masks["draws"] == 2]  # set again for the command's
    assert calibration["flagged"] == 0.01 and calibration["median_size"] == 3  # draws and post-processing
    assert 0 < calibration["healthy_flagged"] <= 0.01
    maps = np.load(detected / "maps.npz")
    names = sorted(maps.files)
    assert sorted(path.name for path in (detected / "masks").iterdir()) == names
    written = np.stack([np.asarray(Image.open(detected / "masks" / name)) for name in names])
    assert set(np.unique(written)) <= {0, 255}
    _, _, function_names, result = from_the_function  # the same slices, maps and draws at the model's size
    assert function_names == names
    at_model_size = anomaly_masks(result.maps, calibration["mask_threshold"], 3, 4).astype(np.float32)
    np.testing.assert_array_equal(written > 0, to_input_size(at_model_size, 256, 256) > 0.5)
    assert 0 < (written > 0).mean() < 0.2
    truth = np.stack([np.asarray(Image.open(lesions[1] / name)) > 0 for name in names])
    metrics = json.loads((detected / "metrics.json").read_text())
    assert metrics["mask_threshold"] == calibration["mask_threshold"]
    assert metrics["healed"]["dice"] == pytest.approx(dice(written > 0, truth))


def test_the_commands_metrics_equal_an_independent_computation(detected, lesions, capsys):
    maps = np.load(detected / "maps.npz")
    names = sorted(maps.files)
    masks = np.stack([np.asarray(Image.open(lesions[1] / name)) > 0 for name in names])
    scores = np.stack([maps[name] for name in names])
    average_precision, dice = brute_force_auprc_and_dice(scores.ravel(), masks.ravel())
    metrics = json.loads((detected / "metrics.json").read_text())
    assert metrics["healed"]["auprc"] == pytest.approx(average_precision, rel=1e-9)
    assert metrics["healed"]["best_dice"] == pytest.approx(dice, rel=1e-9)
    with open(detected / "scores.csv") as file:
        slice_scores = np.array([float(row["score"]) for row in csv.DictReader(file)])
    with_lesion = masks.any(axis=(1, 2))
    pairs = [(a > b) + 0.5 * (a == b) for a in slice_scores[with_lesion] for b in slice_scores[~with_lesion]]
    assert metrics["healed"]["slice_auroc"] == pytest.approx(np.mean(pairs), abs=1e-5)  # scores.csv keeps 6 digits


@pytest.mark.slow
def test_the_command_the_function_and_the_saved_model_give_the_same_maps(trained_run, models, from_the_function,
                                                                         detected, tmp_path):
    config, vqvae, prior = models
    images, positions, names, result = from_the_function
    threshold = result.threshold
    from_command = np.load(detected / "maps.npz")
    for index, name in enumerate(names):
        np.testing.assert_allclose(from_command[name], to_input_size(result.maps[index:index + 1], 256, 256)[0],
                                   atol=1e-6, err_msg=name)
    exported = tf.saved_model.load(str(export_run(trained_run, tmp_path / "saved_model", "pixelcnn")))  # 4 draws
    default = anomaly_maps(vqvae, prior, images[:6], threshold, positions[:6])
    endpoint = exported.anomaly(tf.constant(images[:6]), 0, tf.constant(positions[:6], tf.int32))
    np.testing.assert_allclose(endpoint["maps"].numpy(), default.maps, atol=1e-6)
    np.testing.assert_allclose(endpoint["scores"].numpy(), default.scores, atol=1e-6)
    np.testing.assert_allclose(endpoint["nll"].numpy(), default.nll, rtol=1e-5)
    mask_threshold = RunFolder(trained_run).read_anomaly_calibration("pixelcnn")[0]["masks"]["mask_threshold"]
    np.testing.assert_array_equal(endpoint["masks"].numpy(), anomaly_masks(  # post-processed as detect's
        default.maps, mask_threshold, MaskSettings().median_size, MaskSettings().min_pixels))
    as_bytes = exported.anomaly(tf.constant(np.round(images[:2] * 255).astype(np.uint8)))  # any position, seed 0
    assert as_bytes["maps"].shape == (2, config.image_size, config.image_size)


# --- bad input -------------------------------------------------------------------------------------------------

def run_with_error(capsys, *arguments):
    assert detect.main([str(a) for a in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


def test_a_mask_of_another_size_is_named_and_nothing_is_written(trained_run, lesions, tmp_path, capsys):
    masks = tmp_path / "masks"
    shutil.copytree(lesions[1], masks)
    name = sorted(masks.iterdir())[3].name
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(masks / name)
    error = run_with_error(capsys, trained_run, "--images", lesions[0], "--masks", masks, "--out", tmp_path / "out")
    assert f"the mask {masks / name} is 128x128 but its slice is 256x256" in error
    assert not (tmp_path / "out").exists()


def test_a_slice_without_a_mask_is_named(trained_run, lesions, tmp_path, capsys):
    masks = tmp_path / "masks"
    shutil.copytree(lesions[1], masks)
    removed = sorted(masks.iterdir())[:2]
    for path in removed:
        path.unlink()
    error = run_with_error(capsys, trained_run, "--images", lesions[0], "--masks", masks, "--out", tmp_path / "out")
    assert f"has no mask for {removed[0].name} (nor for 1 other slices)" in error
    assert not (tmp_path / "out").exists()


def test_masks_that_mark_no_lesion_are_named_and_nothing_is_written(trained_run, lesions, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    for mask in lesions[1].iterdir():
        Image.fromarray(np.zeros_like(np.asarray(Image.open(mask)))).save(masks / mask.name)
    error = run_with_error(capsys, trained_run, "--images", lesions[0], "--masks", masks, "--out", tmp_path / "out")
    assert f"none of the 32 masks in --masks {masks} marks a lesion (a non-zero pixel)" in error
    assert not (tmp_path / "out").exists()


def test_a_run_without_a_prior_that_scores_codes_is_refused(trained_run, lesions, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # not offered: argparse names the choices
        detect.main([str(trained_run), "--images", str(lesions[0]), "--prior", "dcgan", "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --prior: invalid choice: 'dcgan'" in error
    assert "pixelcnn" in error.split("choose from")[1] and "dcgan" not in error.split("choose from")[1]
    only_dcgan = tmp_path / "run"
    shutil.copytree(trained_run, only_dcgan)
    (only_dcgan / "pixelcnn.keras").unlink()
    error = run_with_error(capsys, only_dcgan, "--images", lesions[0], "--out", tmp_path / "o")
    assert "the dcgan prior cannot score single codes" in error and "--stage prior --prior pixelcnn" in error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, message", [
    (["--draws", "0"], "--draws 0 is out of range (it must be at least 1)"),
    (["--threshold", "-1"], "--threshold -1.0 is out of range (it must be positive)"),
    (["--percentile", "100"], "--percentile 100.0 is out of range (it must be between 50.0 and 99.99)"),
    (["--percentile", "99", "--threshold", "5"], "--threshold 5.0 replaces the threshold that --percentile 99.0 would "
                                                 "calibrate: give one of them"),
    (["--flagged", "0.02", "--mask-threshold", "0.1"], "--mask-threshold 0.1 replaces the threshold that --flagged "
                                                       "0.02 would calibrate: give one of them"),
    (["--median-size", "4"], "--median-size 4 is out of range (it must be odd and at least 1)"),
])
def test_bad_flags_are_named(trained_run, lesions, tmp_path, capsys, flags, message):
    error = run_with_error(capsys, trained_run, "--images", lesions[0], "--out", tmp_path / "o", *flags)
    assert message in error


def test_a_missing_images_folder_and_a_folder_that_is_no_run_are_named(trained_run, tmp_path, capsys):
    error = run_with_error(capsys, trained_run, "--images", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert f"data folder {tmp_path / 'nowhere'} does not exist" in error
    error = run_with_error(capsys, tmp_path, "--images", tmp_path, "--out", tmp_path / "o")
    assert f"{tmp_path} is not a run folder made by keras_vqvae.train" in error


# --- the lesions -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bright", "dark"])
def test_lesions_are_smooth_blobs_inside_the_brain_brighter_or_darker_than_their_tissue(kind):
    slices, masks, names = lesioned_arrays(LESION_KINDS[kind], "test", SubjectSplit(1, 1, 1), lesion_rate=0.6)
    healthy, _, _ = lesioned_arrays(LESION_KINDS[kind], "test", SubjectSplit(1, 1, 1), lesion_rate=1e-9)
    with_lesion = masks.any(axis=(1, 2))
    assert 0.3 < with_lesion.mean() < 0.9 and names[0] == "case_003_slice_0.nii.png"
    assert not masks[healthy == 0].any()  # inside the brain only
    np.testing.assert_array_equal(slices[~with_lesion], healthy[~with_lesion])
    ratio = slices[masks].astype(float).mean() / healthy[masks].astype(float).mean()
    assert (ratio > 1.3) if kind == "bright" else (ratio < 0.7)
    area = masks.sum(axis=(1, 2))[with_lesion]
    assert area.min() < 100 and area.max() > 300  # from a few pixels to a few percent of the brain
    changed = slices != healthy  # the edge is soft: changed pixels reach a little beyond the mask
    assert changed[masks].mean() > 0.95 and (changed & ~masks).sum() > 0


def test_pasted_tissue_brings_the_donors_texture_at_the_mean_intensity_of_the_tissue_it_replaces():
    rows, columns = np.mgrid[0:96, 0:96]
    brain = np.hypot(rows - 48, columns - 48) < 40
    pixels = np.where(brain, 100, 0).astype(np.uint8)  # flat tissue
    donor = np.where(brain, np.where(columns % 4 < 2, 60, 140), 0).astype(np.uint8)  # stripes of the same mean
    lesioned, mask = insert_lesions(pixels, LESION_KINDS["pasted"], np.random.default_rng(3), 1.0, donor)
    assert mask.sum() > 50 and not mask[~brain].any()
    inside = lesioned[mask].astype(float)
    assert abs(inside.mean() - 100) < 5  # the intensity alone cannot tell it
    assert inside.std() > 25  # the donor's stripes
    np.testing.assert_array_equal(lesioned[~brain], 0)
    with pytest.raises(ValueError, match="donor"):
        insert_lesions(pixels, LESION_KINDS["pasted"], np.random.default_rng(3), 1.0)


def test_pasted_tissue_comes_from_another_subject_six_to_twelve_levels_away_and_keeps_the_mean():
    cases, numbers = np.repeat([4, 5, 6], 32), np.tile(np.arange(32), 3)
    for index in (0, 3, 20, 31, 40):
        donors = {donor_index(cases, numbers, index, np.random.default_rng(seed)) for seed in range(30)}
        assert all(cases[d] != cases[index] and 6 <= abs(numbers[d] - numbers[index]) <= 12 for d in donors)
        assert len({cases[d] for d in donors}) == 2
    with pytest.raises(InputError, match="only one"):
        donor_index(np.zeros(32, int), np.arange(32), 3, np.random.default_rng(0))
    slices, masks, _ = lesioned_arrays(LESION_KINDS["pasted"], "test", SubjectSplit(1, 1, 2), lesion_rate=0.6)
    healthy, _, _ = lesioned_arrays(LESION_KINDS["pasted"], "test", SubjectSplit(1, 1, 2), lesion_rate=1e-9)
    assert 0.3 < masks.any(axis=(1, 2)).mean() < 0.9 and not masks[healthy == 0].any()
    ratio = slices[masks].astype(float).mean() / healthy[masks].astype(float).mean()
    assert 0.9 < ratio < 1.1  # at the tissue's mean intensity
    assert np.abs(slices[masks].astype(float) - healthy[masks]).mean() > 10  # but other tissue


def test_the_same_seed_writes_the_same_lesions_and_slices_without_brain_get_none():
    rng = np.random.default_rng(0)
    blank = np.zeros((64, 64), np.uint8)
    image, mask = insert_lesions(blank, LESION_KINDS["dark"], rng, lesion_rate=1.0)
    assert not mask.any() and (image == 0).all()
    first = lesioned_arrays(LESION_KINDS["dark"], "test", SubjectSplit(1, 1, 1))
    again = lesioned_arrays(LESION_KINDS["dark"], "test", SubjectSplit(1, 1, 1))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_make_lesions_refuses_to_overwrite(lesions, capsys):
    root = lesions[0].parent
    assert data_command.main(["make-lesions", str(root), "--subjects", "3,1,1"]) == 2
    assert f"{lesions[0]} already exists" in capsys.readouterr().err
