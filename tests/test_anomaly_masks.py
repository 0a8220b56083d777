"""Binary masks from anomaly maps: the healthy threshold flags the share of healthy brain asked for, the median
filter removes a lone spike and keeps a blob, small components go and large ones stay, on hand-made maps; the
calibration of a detector's threshold on healthy slices, and the run's, kept and read back."""

import dataclasses
import json
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_vqvae import InputError
from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, eroded_brain
from keras_vqvae.anomaly_masks import (CALIBRATION_SLICES, MEDIAN_BATCH, MaskSettings, anomaly_masks,
                                      calibrate_mask_threshold, calibration_subset, healthy_threshold,
                                      mask_tensor, median_filtered, run_mask_calibration, subject_threshold,
                                      without_small_components)
from keras_vqvae.calibration import run_calibration
from keras_vqvae.data import SubjectSplit, load_split, make_dataset
from keras_vqvae.training import RunFolder
from conftest import copy_run

masks_module = sys.modules["keras_vqvae.anomaly_masks"]  # the module: the package's name of it is the function


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


def test_a_long_winding_component_is_one_component_and_the_graph_gives_the_same_masks():
    masks = np.zeros((2, 21, 21), bool)
    masks[0, ::4, :20] = True  # rows joined at alternating ends: one snake of 6 x 20 + 5 x 3 = 135 pixels
    masks[0, 1:4, 19] = masks[0, 9:12, 19] = masks[0, 17:20, 19] = True
    masks[0, 5:8, 0] = masks[0, 13:16, 0] = True
    masks[1, 2:7, 2:8] = True  # 30 pixels, and one of 29 beside it
    masks[1, 10:15, 2:8] = True
    masks[1, 10, 2] = False
    kept = without_small_components(masks, 30)
    np.testing.assert_array_equal(kept[0], masks[0])
    assert kept[1].sum() == 30 and kept[1, 2:7, 2:8].all()
    maps = masks.astype(np.float32) * 2.0 + np.random.default_rng(3).random(masks.shape).astype(np.float32) * 0.1
    maps[1, 8:18, 10:20] = 3.0  # a 10 x 10 blob: its corners go in the median filter, the rest stays
    in_graph = tf.function(lambda m: mask_tensor(m, 1.0, 3, 30))(tf.constant(maps)).numpy()
    np.testing.assert_array_equal(in_graph, anomaly_masks(maps, 1.0, 3, 30))
    assert in_graph.sum() == 96 and in_graph[1, 9:17, 11:19].all()


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


class MapsDetector:
    """Stands in for an AnomalyDetector: its maps are given, whatever it examines."""

    def __init__(self, maps, settings=AnomalySettings()):
        self.maps, self.settings, self.threshold, self.examined = maps, settings, 7.5, []

    def examine(self, images, positions=None, batch_size=16, verbose=0):
        self.examined.append((len(images), positions))
        return types.SimpleNamespace(maps=self.maps)


def test_the_calibrated_threshold_marks_the_share_of_healthy_brain_asked_for_and_says_so():
    rng = np.random.default_rng(1)
    images = np.zeros((6, 40, 40, 1), np.float32)
    images[:, 5:35, 5:35] = 0.6  # the brain; eroded by 2 pixels, 26 x 26 of it count
    maps = rng.random((6, 40, 40)).astype(np.float32)
    maps[:, :7] = 50.0  # outside the eroded brain: never counted, never the threshold
    detector = MapsDetector(maps)
    calibration = calibrate_mask_threshold(detector, images, np.arange(6), np.zeros(6),
                                           MaskSettings(flagged=0.05, median_size=1, min_pixels=1))
    inside = np.zeros((6, 40, 40), bool)
    inside[:, 7:33, 7:33] = True
    assert calibration["mask_threshold"] < 1.0
    assert calibration["healthy_flagged"] == pytest.approx((maps[inside] > calibration["mask_threshold"]).mean())
    assert 0.045 < calibration["healthy_flagged"] <= 0.05
    assert calibration == {**calibration, "slices": 6, "subjects": 1, "flagged": 0.05, "median_size": 1,
                           "min_pixels": 1, "per_subject": True, "threshold": 7.5, "draws": 4, "temperature": 1.0,
                           "rounds": 1, "sign": "both", "smoothing": 1.0, "seed": 0}
    filtered = calibrate_mask_threshold(detector, images, None, np.zeros(6),
                                        MaskSettings(flagged=0.05, median_size=3, min_pixels=1))
    assert filtered["median_size"] == 3 and filtered["mask_threshold"] != calibration["mask_threshold"]


def test_the_threshold_per_subject_is_the_largest_of_the_subjects_own_and_no_subject_is_flagged_more():
    rng = np.random.default_rng(2)
    maps = rng.random((6, 40, 40)).astype(np.float32)
    maps[4:] *= 3.0  # the third subject's maps run higher: a pooled 5% would mark far more of it
    brain = np.zeros((6, 40, 40), bool)
    brain[:, 4:36, 4:36] = True
    subjects = np.array(["a", "a", "b", "b", "c", "c"])
    own = [healthy_threshold(maps[subjects == s], brain[subjects == s], 0.05) for s in "abc"]
    threshold = subject_threshold(maps, brain, subjects, 0.05)
    assert threshold == max(own) == own[2]
    assert all((maps[subjects == s][brain[subjects == s]] > threshold).mean() <= 0.05 for s in "abc")
    pooled = healthy_threshold(maps, brain, 0.05)
    assert (maps[4:][brain[4:]] > pooled).mean() > 0.1  # pooled, the high subject gets most of the flags
    with pytest.raises(ValueError, match="2 subjects were given for 6 maps"):
        subject_threshold(maps, brain, subjects[:2], 0.05)


def test_the_calibrated_share_is_that_of_the_masks_after_small_components_go():
    images = np.zeros((2, 40, 40, 1), np.float32)
    images[:, 4:36, 4:36] = 0.6  # eroded by 2 pixels: 28 x 28 brain pixels a slice
    maps = np.zeros((2, 40, 40), np.float32)
    maps[:, 10:16, 10:16] = 5.0  # a blob of 36 pixels in each slice
    maps[:, 25, 25] = maps[:, 25, 30] = 9.0  # and two lone spikes
    settings = MaskSettings(flagged=0.05, median_size=1, min_pixels=30)
    calibration = calibrate_mask_threshold(MapsDetector(maps), images, None, ["a", "b"], settings)
    assert calibration["mask_threshold"] == 0.0  # 38 of 784 pixels (4.8%) are above 0: the share allows them all
    assert calibration["healthy_flagged"] == pytest.approx(36 / 784)  # the spikes, single pixels, are removed


def test_the_calibration_takes_at_most_its_number_of_slices_evenly_spaced():
    np.testing.assert_array_equal(calibration_subset(5), np.arange(5))
    chosen = calibration_subset(4 * CALIBRATION_SLICES)
    assert len(chosen) == CALIBRATION_SLICES and chosen[0] == 0 and chosen[-1] == 4 * CALIBRATION_SLICES - 1
    assert set(np.diff(chosen)) <= {4, 5}


@pytest.mark.parametrize("settings, message", [
    ({"flagged": 0.0}, "--flagged 0.0 is out of range (it must be between 0.0001 and 0.5)"),
    ({"median_size": 4}, "--median-size 4 is out of range (it must be odd and at least 1)"),
    ({"min_pixels": 0}, "--min-pixels 0 is out of range (it must be at least 1)"),
    ({"mask_threshold": -1.0}, "--mask-threshold -1.0 is out of range (it must be not negative)"),
])
def test_bad_mask_settings_are_named(settings, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MaskSettings(**settings)


def test_train_keeps_the_masks_threshold_and_the_run_reads_it_back_or_sets_it_for_other_settings(
        trained_run, tmp_path, monkeypatch):
    run = RunFolder(copy_run(trained_run, tmp_path))
    kept = run.read_anomaly_calibration("pixelcnn")[0]
    config, vqvae, prior = run.load("pixelcnn")
    detector = AnomalyDetector(vqvae, prior, kept["threshold"])
    assert kept["masks"]["threshold"] == kept["threshold"] and kept["masks"]["slices"] == 32  # one subject
    assert kept["masks"]["subjects"] == 1 and kept["masks"]["per_subject"]
    assert 0 <= kept["masks"]["healthy_flagged"] <= 0.01  # components under 30 pixels go: at this size, maybe all
    split = load_split(config.data, "validate", config.seed, SubjectSplit(*config.synthetic_subjects))
    images = np.concatenate([batch.numpy() for batch in make_dataset(split, config.image_size, 64)]) + 0.5
    filtered = median_filtered(detector.examine(images, np.array(split.slice_numbers)).maps, 5)  # (32, S, S)
    brain = eroded_brain(images).numpy()[..., 0] > 0
    one_subject = float(np.quantile(filtered[brain], 0.99, method="higher"))  # its own 1%: the largest of one
    assert kept["masks"]["mask_threshold"] == pytest.approx(one_subject, rel=1e-5)
    marked = without_small_components(filtered > kept["masks"]["mask_threshold"], 30)
    assert kept["masks"]["healthy_flagged"] == pytest.approx(marked[brain].mean(), abs=1e-4)

    def no_data(*arguments):
        raise AssertionError("the run's data was read")

    monkeypatch.setattr(masks_module, "load_split", no_data)
    assert run_mask_calibration(run, "pixelcnn", detector) == kept["masks"]  # the settings it was made with
    monkeypatch.undo()
    two_draws = AnomalyDetector(vqvae, prior, kept["threshold"], AnomalySettings(draws=2))
    again = run_mask_calibration(run, "pixelcnn", two_draws)
    assert again["draws"] == 2 and again["slices"] == 32
    on_disk = json.loads(run.anomaly_path("pixelcnn").read_text())
    assert on_disk["masks"] == kept["masks"] and on_disk["other_masks"] == [again]  # the run's own never replaced
    assert on_disk["threshold"] == kept["threshold"]  # the code threshold kept
    monkeypatch.setattr(masks_module, "load_split", no_data)
    assert run_mask_calibration(run, "pixelcnn", two_draws) == again  # read back: the data is not read again
    assert run_mask_calibration(run, "pixelcnn", detector) == kept["masks"]
    monkeypatch.undo()
    run.write_anomaly_calibration("pixelcnn", {name: value for name, value in on_disk.items()
                                               if name not in ("masks", "other_masks")})  # as an older run has it
    remade = run_mask_calibration(run, "pixelcnn", detector)  # set again on the validation slices, from the data
    assert remade == {**kept["masks"], "mask_threshold": pytest.approx(kept["masks"]["mask_threshold"], rel=1e-5),
                      "healthy_flagged": pytest.approx(kept["masks"]["healthy_flagged"], rel=1e-3)}
    assert json.loads(run.anomaly_path("pixelcnn").read_text())["masks"] == remade

    def data_gone(*arguments):
        raise InputError("data folder /nowhere does not exist: give the folder of slices")

    monkeypatch.setattr(masks_module, "load_split", data_gone)
    with pytest.raises(InputError, match=r"healthy validation slices, which cannot be read \(data folder /nowhere "
                                         r"does not exist.*\): restore the run's data \(detect also takes "
                                         r"--mask-threshold\)"):
        run_mask_calibration(run, "pixelcnn", detector, dataclasses.replace(MaskSettings(), flagged=0.02))


def test_a_threshold_at_another_percentile_is_made_without_replacing_the_runs(trained_run, tmp_path):
    run = RunFolder(copy_run(trained_run, tmp_path))
    before = run.anomaly_path("pixelcnn").read_text()
    config, vqvae, prior = run.load("pixelcnn")
    other = run_calibration(run, "pixelcnn", prior, 90.0, verbose=0)
    assert other["percentile"] == 90.0 and other["threshold"] < json.loads(before)["threshold"]
    assert run.anomaly_path("pixelcnn").read_text() == before  # the run's own, with its masks, is kept
