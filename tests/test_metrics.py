import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import CodebookUsage, Perplexity, brain_ssim, psnr, ssim
from keras_vqvae.metrics.generation import (MS_SSIM_POWER_FACTORS, generation_metrics, ms_ssim_scales,
                                            pairwise_ms_ssim, pairwise_ssim)
from keras_vqvae.metrics.image import brain_mask


def brain_batch(subject_slices):
    return tf.convert_to_tensor(subject_slices[2:6, ..., None] / 255.0, tf.float32)  # (4, 64, 64, 1) in [0, 1]


def test_ssim_is_tf_image_ssim_to_float_precision(subject_slices):
    x = brain_batch(subject_slices)
    blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
    np.testing.assert_allclose(ssim(x, blurred).values, tf.image.ssim(x, blurred, max_val=1.0), atol=1e-5)  # XLA rounding


def test_identical_images_score_one(subject_slices):
    x = brain_batch(subject_slices)
    np.testing.assert_allclose(ssim(x, x).values, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(ssim(x, x).counted, 1.0)
    values, has_brain = brain_ssim(x, x)
    np.testing.assert_allclose(values, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(has_brain, 1.0)


def test_blur_costs_more_inside_the_brain_than_over_the_whole_image(subject_slices):
    x = brain_batch(subject_slices)
    blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
    whole, inside = ssim(x, blurred).values, brain_ssim(x, blurred).values
    assert np.all(inside < whole - 0.02)


def test_a_grey_background_is_penalised_by_ssim_but_not_by_brain_ssim(subject_slices):
    x = brain_batch(subject_slices)
    lifted = tf.where(x > 0, x, 2.0 / 255.0)  # background two grey levels above black
    assert np.all(ssim(x, lifted).values < 0.9)
    values, _ = brain_ssim(x, lifted)
    assert np.all(values > 0.9)


def test_brain_mask_is_the_foreground_dilated_by_two_pixels(subject_slices):
    x = brain_batch(subject_slices)
    foreground = np.pad(x.numpy()[..., 0] > 0, ((0, 0), (2, 2), (2, 2)))
    windows = np.lib.stride_tricks.sliding_window_view(foreground, (5, 5), axis=(1, 2))  # (4, 64, 64, 5, 5)
    np.testing.assert_array_equal(brain_mask(x).numpy()[..., 0], windows.any(axis=(-2, -1)))
    assert 0.1 < brain_mask(x).numpy().mean() < 0.6  # a brain on a black background, not the whole image


def test_empty_images_are_excluded_from_brain_ssim():
    black = tf.zeros((2, 32, 32, 1))
    _, has_brain = brain_ssim(black, black + 0.1)
    np.testing.assert_array_equal(has_brain, 0.0)


def test_psnr_of_a_known_error():
    x = tf.fill((1, 16, 16, 1), 0.5)
    values, counted = psnr(x, x + 0.1)
    np.testing.assert_allclose(values, 20.0, rtol=1e-4)  # 10 log10(1 / 0.01)
    np.testing.assert_array_equal(counted, 1.0)


def test_a_blank_slice_and_an_exact_reconstruction_are_left_out_of_psnr(subject_slices):
    x = tf.concat([tf.zeros((1, 64, 64, 1)), brain_batch(subject_slices)[:2]], axis=0)  # blank, then two slices
    reconstructions = tf.concat([x[:2], x[2:] + 0.01], axis=0)  # the blank and the first slice exact
    values, counted = psnr(x, reconstructions)
    np.testing.assert_array_equal(counted, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(values, [0.0, 0.0, 40.0], rtol=1e-4)  # finite: means and JSON files stay finite
    assert psnr(x, reconstructions).mean() == pytest.approx(40.0, rel=1e-4)  # the counted slice's alone
    assert np.isnan(brain_ssim(x[:1], x[:1]).mean())  # no slice counts


def test_codebook_usage_and_perplexity_accumulate_over_updates():
    usage, perplexity = CodebookUsage(8), Perplexity(8)
    for indices in ([0, 0, 1, 1], [2, 2, 3, 3]):
        usage.update_state(tf.constant(indices))
        perplexity.update_state(tf.constant(indices))
    np.testing.assert_allclose(usage.result(), 4 / 8)
    np.testing.assert_allclose(perplexity.result(), 4.0, rtol=1e-5)  # four equally used codes
    usage.reset_state()
    np.testing.assert_allclose(usage.result(), 0.0)


def test_pairwise_ssim_is_tf_image_ssim_of_every_pair(subject_slices):
    x = brain_batch(subject_slices)[:3]
    y = tf.nn.avg_pool2d(brain_batch(subject_slices), 3, 1, "SAME")  # (4, 64, 64, 1)
    expected = [[tf.image.ssim(x[i:i + 1], y[j:j + 1], max_val=1.0)[0] for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(pairwise_ssim(x, y), expected, atol=2e-5)


def test_pairwise_ms_ssim_is_tf_image_ssim_multiscale_with_the_scales_that_fit(subject_slices):
    x = brain_batch(subject_slices)[:2]
    y = brain_batch(subject_slices)[1:4]
    scales = ms_ssim_scales(64)
    assert scales == 3  # 64, 32, 16: a fourth scale (8 pixels) is smaller than the 11-pixel window
    weights = np.array(MS_SSIM_POWER_FACTORS[:scales]) / sum(MS_SSIM_POWER_FACTORS[:scales])
    expected = [[tf.image.ssim_multiscale(x[i:i + 1], y[j:j + 1], 1.0, power_factors=weights)[0] for j in range(3)]
                for i in range(2)]
    np.testing.assert_allclose(pairwise_ms_ssim(x, y), expected, atol=2e-5)


def test_ms_ssim_scales_follow_the_image_side():
    assert [ms_ssim_scales(side) for side in (11, 21, 22, 64, 128, 256, 512, 100)] == [1, 1, 2, 3, 4, 5, 5, 3]


def test_generation_metrics_see_copies_collapse_and_variety(subject_slices):
    slices = tf.convert_to_tensor(subject_slices[..., None] / 255.0, tf.float32)  # (8, 64, 64, 1)
    train, test = slices[:6], slices[6:]
    copies = generation_metrics(train[:4], test, train)
    assert copies["nearest_train_ssim"] > 0.999  # memorised training slices are recognised as such
    assert copies["real_nearest_train_ssim"] < 0.999
    collapsed = generation_metrics(tf.repeat(test[:1], 4, axis=0), test, train)
    assert collapsed["diversity_ms_ssim"] > 0.999  # four identical slices: no diversity at all
    assert collapsed["generated_test_ssim"] > 0.999 and collapsed["test_matched_above_0_6"] >= 0.5
    noise = tf.random.stateless_uniform((4, 64, 64, 1), seed=(0, 1))
    unlike = generation_metrics(noise, test, train)
    assert unlike["generated_test_ssim"] < 0.1 and unlike["test_matched_above_0_6"] == 0.0
    assert unlike["diversity_ms_ssim"] < collapsed["diversity_ms_ssim"]


def test_pairwise_brain_ssim_is_brain_ssim_of_every_pair(subject_slices):
    x = brain_batch(subject_slices)  # (4, 64, 64, 1)
    y = tf.concat([tf.nn.avg_pool2d(x, 3, 1, "SAME"), tf.roll(x, 3, axis=2)], axis=0)  # blurred and shifted: (8, ...)
    pairs = pairwise_ssim(x, y, region="brain")  # (4, 8): x_a's brain
    for a in range(4):
        expected, has_brain = brain_ssim(tf.repeat(x[a:a + 1], 8, axis=0), y)
        np.testing.assert_array_equal(has_brain, 1.0)
        np.testing.assert_allclose(pairs[a], expected, atol=2e-5)
    assert np.ptp(pairs) > 0.1  # pairs that differ, not one figure
