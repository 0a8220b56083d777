"""Binary masks from anomaly maps: the healthy threshold flags the share of healthy brain asked for, the median
filter removes a lone spike and keeps a blob, small components go and large ones stay, on hand-made maps."""

import numpy as np
import pytest

from keras_vqvae.anomaly_masks import (MEDIAN_BATCH, anomaly_masks, healthy_threshold, median_filtered,
                                      without_small_components)


def test_the_healthy_threshold_flags_the_share_of_healthy_brain_pixels_asked_for():
    rng = np.random.default_rng(0)
    maps, brain = rng.random((4, 64, 64)), np.zeros((4, 64, 64), bool)
    brain[:, 8:56, 8:56] = True
    maps[~brain] = 10.0  # the background is never counted
    for share in (0.01, 0.05):
        threshold = healthy_threshold(maps, brain, share)
        flagged = (maps[brain] > threshold).mean()
        assert share - 0.002 < flagged <= share


def test_when_fewer_healthy_pixels_than_the_share_are_nonzero_every_nonzero_pixel_is_flagged():
    maps, brain = np.zeros((1, 100, 100)), np.ones((1, 100, 100), bool)
    maps[0, :5, :10] = np.arange(1, 51).reshape(5, 10)  # 0.5% of the brain above zero
    assert healthy_threshold(maps, brain, 0.01) == 0.0
    assert healthy_threshold(maps, brain, 0.002) == 31.0  # 19 pixels, 32 to 50, lie above it: under 0.2%
    with pytest.raises(ValueError, match="share"):
        healthy_threshold(maps, brain, 1.0)


def test_the_median_filter_removes_a_lone_spike_and_keeps_a_blob():
    maps = np.zeros((1, 12, 12), np.float32)
    maps[0, 2, 2] = 5.0  # a lone spike
    maps[0, 6:9, 6:9] = 3.0  # a 3 x 3 blob
    filtered = median_filtered(maps, 3)[0]
    assert filtered[2, 2] == 0.0
    assert filtered[7, 7] == 3.0 and filtered[6, 6] == 0.0  # the blob's centre stays, its corners go
    np.testing.assert_array_equal(median_filtered(maps, 1), maps)
    with pytest.raises(ValueError, match="odd"):
        median_filtered(maps, 4)


def test_components_smaller_than_the_limit_are_removed_and_diagonal_pixels_do_not_connect():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 0, 0:3] = True  # 3 pixels
    masks[0, 5:7, 5:10] = True  # 10 pixels
    masks[1, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = True  # a diagonal: 5 components of 1 pixel
    kept = without_small_components(masks, 5)
    assert kept[0].sum() == 10 and kept[0, 5:7, 5:10].all()
    assert not kept[1].any()
    np.testing.assert_array_equal(without_small_components(masks, 1), masks)


def test_anomaly_masks_filter_then_threshold_then_clean():
    maps = np.zeros((1, 16, 16), np.float32)
    maps[0, 3, 3] = 9.0  # a spike above the threshold: the median filter takes it
    maps[0, 8:12, 8:12] = 2.0  # a blob above it: kept
    maps[0, 1, 12:14] = 2.0  # two pixels above it: too small a component
    assert anomaly_masks(maps, 1.0).sum() == 1 + 16 + 2
    masks = anomaly_masks(maps, 1.0, median_size=3, min_pixels=4)[0]
    assert not masks[3, 3] and not masks[1, 12:14].any() and masks[9:11, 9:11].all()


def test_the_median_filter_gives_each_map_the_same_whatever_batch_it_falls_in():
    maps = np.random.default_rng(2).random((MEDIAN_BATCH + 3, 9, 9)).astype(np.float32)
    together = median_filtered(maps, 3)
    for index in (0, MEDIAN_BATCH - 1, MEDIAN_BATCH, MEDIAN_BATCH + 2):
        np.testing.assert_array_equal(together[index], median_filtered(maps[index:index + 1], 3)[0])
