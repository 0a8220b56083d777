"""The run's stages as a user relies on them: what a stage reads, what it counts, what it says when a file of the run
is damaged, and that every command takes the run's own prior."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from keras_vqvae import export, predict, train
from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, anomaly_maps
from keras_vqvae.errors import InputError
from keras_vqvae.models.networks import Decoder, Encoder
from keras_vqvae.models.quantizer import VectorQuantizer
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import DiversityMonitor, GatedPixelCNN
from keras_vqvae.priors.generation import generate
from keras_vqvae.training import splits as run_splits
from keras_vqvae.training.run_folder import RunFolder
from keras_vqvae.training.splits import RunSplits
from conftest import TINY, copy_run

QUICK = [*TINY, "--epochs", "1"]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the session's tiny finished run (PixelCNN conditioned on positions, then a DCGAN), to write into."""
    return copy_run(trained_run, tmp_path)


def _tiny_models(conditional: bool = True):
    keras.utils.set_random_seed(0)
    vqvae = VQVAE(Encoder(4, 8, 1, 4), VectorQuantizer(16, 4), Decoder(4, 8, 1, 4))
    prior = GatedPixelCNN(16, (8, 8), filters=8, layers=2, kernel_size=3, num_classes=4 if conditional else 0)
    return vqvae, prior


@pytest.mark.slow
def test_a_prior_in_training_compares_its_samples_with_validation_slices_never_test_slices(run_copy, monkeypatch):
    seen = []
    original = DiversityMonitor.__init__

    def recording(self, vqvae, real_images, *args, **kwargs):
        seen.append(np.array(real_images))
        original(self, vqvae, real_images, *args, **kwargs)

    monkeypatch.setattr(DiversityMonitor, "__init__", recording)
    assert train.main([*QUICK, "--stage", "prior", "--prior", "dcgan", "--dcgan-epochs", "2",
                       "--run-dir", str(run_copy)]) == 0
    splits = RunSplits.load(RunFolder(run_copy).read_config())
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], splits.images("validate"))
    assert not any(np.array_equal(seen[0], splits.images(name)) for name in ("train", "test"))


@pytest.mark.slow
def test_every_generated_slice_counts_in_every_generation_metric(run_copy):
    assert train.main([*QUICK, "--stage", "prior", "--prior", "dcgan", "--num-generated", "70",
                       "--run-dir", str(run_copy)]) == 0
    generation = json.loads((run_copy / "metrics.json").read_text())["dcgan"]["generation"]
    assert generation["generated"] == 70 and generation["anatomy_slices"] == 32  # the test split's 32 slices


@pytest.mark.slow
def test_the_prior_stage_decodes_the_training_split_once_and_caches_none_of_it(run_copy, monkeypatch):
    made = []
    original = run_splits.make_dataset

    def recording(slice_set, *args, **kwargs):
        made.append((slice_set.name, kwargs.get("cache", "memory"), kwargs.get("training", False)))
        return original(slice_set, *args, **kwargs)

    monkeypatch.setattr(run_splits, "make_dataset", recording)
    (run_copy / "codes.npz").unlink()  # the code maps are encoded again, from the decoded slices
    shutil.rmtree(run_copy / "pixelcnn_checkpoints")
    assert train.main([*QUICK, "--stage", "prior", "--prior", "pixelcnn", "--run-dir", str(run_copy)]) == 0
    assert [entry for entry in made if entry[0] == "train"] == [("train", "none", False)]


def test_generate_returns_the_positions_it_drew_for():
    vqvae, prior = _tiny_models()
    spread = generate(vqvae, prior, 6, seed=1)
    np.testing.assert_array_equal(spread.positions, [0, 1, 1, 2, 2, 3])  # evenly over the 4 positions
    assert spread.images.shape == (6, 32, 32, 1) and spread.codes.shape == (6, 8, 8)
    np.testing.assert_array_equal(generate(vqvae, prior, 3, seed=1, condition=2).positions, [2, 2, 2])
    assert generate(vqvae, _tiny_models(conditional=False)[1], 2).positions is None


def test_an_anomaly_threshold_is_taken_from_the_argument_or_the_settings_never_ignored():
    vqvae, prior = _tiny_models(conditional=False)
    assert AnomalyDetector(vqvae, prior, settings=AnomalySettings(threshold=2.5)).threshold == 2.5
    assert AnomalyDetector(vqvae, prior, 3.0).threshold == 3.0
    assert AnomalyDetector(vqvae, prior, 2.5, AnomalySettings(threshold=2.5)).threshold == 2.5
    with pytest.raises(InputError, match="two anomaly thresholds were given, 1.0 and settings.threshold 2.5"):
        anomaly_maps(vqvae, prior, np.zeros((1, 32, 32, 1), np.float32), 1.0, settings=AnomalySettings(threshold=2.5))
    with pytest.raises(InputError, match="no anomaly threshold was given"):
        AnomalyDetector(vqvae, prior)


@pytest.mark.slow
def test_predict_samples_with_the_runs_own_prior_when_none_is_named(tmp_path):
    run = tmp_path / "run"
    transformer = ["--prior", "transformer", "--transformer-dim", "8", "--transformer-layers", "1",
                   "--transformer-heads", "2", "--transformer-epochs", "1", "--transformer-batch-size", "16"]
    assert train.main([*QUICK, *transformer, "--run-dir", str(run)]) == 0
    assert not (run / "pixelcnn.keras").exists()
    assert predict.main([str(run), "--num-samples", "2", "--out", str(tmp_path / "samples"), "--quiet"]) == 0
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 2


@pytest.mark.slow
def test_a_damaged_calibration_is_named_and_made_again_from_the_kept_code_maps_and_the_validation_slices(
        run_copy, capsys):
    calibration = run_copy / "pixelcnn_anomaly.json"
    kept = json.loads(calibration.read_text())
    calibration.write_text('{"threshold": 2.')  # cut short
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "data": str(run_copy / "moved away")}))
    # the code threshold needs only the kept code maps; the masks' needs the validation slices, which have moved
    assert export.main([str(run_copy), "--prior", "pixelcnn", "--out", str(run_copy / "exported")]) == 2
    captured = capsys.readouterr()
    assert f"note: {calibration} is damaged (JSONDecodeError" in captured.out
    assert "the masks' threshold is set on the run's healthy validation slices, which cannot be read" in captured.err
    assert "restore the run's data" in captured.err and not (run_copy / "exported").exists()
    again = json.loads(calibration.read_text())
    assert again["threshold"] == pytest.approx(kept["threshold"], rel=1e-5) and "masks" not in again
    (run_copy / "config.json").write_text(json.dumps(config))  # the data back: the same command goes through
    assert export.main([str(run_copy), "--prior", "pixelcnn", "--out", str(run_copy / "exported")]) == 0
    masks = json.loads(calibration.read_text())["masks"]
    assert masks["mask_threshold"] == pytest.approx(kept["masks"]["mask_threshold"], rel=1e-4)


@pytest.mark.slow
def test_a_damaged_calibration_without_code_maps_says_how_to_make_them(run_copy, capsys):
    (run_copy / "pixelcnn_anomaly.json").write_text("not json")
    (run_copy / "codes.npz").unlink()
    assert export.main([str(run_copy), "--prior", "pixelcnn", "--out", str(run_copy / "exported")]) == 2
    error = capsys.readouterr().err
    assert "codes.npz) are missing, damaged, from an older VQ-VAE or without their slice positions" in error
    assert f"--run-dir {run_copy} --stage prior --prior pixelcnn" in error and not (run_copy / "exported").exists()


@pytest.mark.slow
def test_a_damaged_judge_is_named_and_trained_again(run_copy, capsys):
    network = run_copy / "position_network.keras"
    network.write_bytes(network.read_bytes()[:1000])
    config = RunFolder(run_copy).read_config()
    flags = [*QUICK, "--stage", "prior", "--prior", config.prior, "--run-dir", str(run_copy)]
    assert train.main(flags) == 0
    out = capsys.readouterr().out
    assert f"note: {network} is damaged" in out and "so the slice-position network is trained again" in out
    assert RunFolder(run_copy).load_position_network()[0] is not None
