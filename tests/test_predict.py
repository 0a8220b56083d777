import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import write_slices
from keras_vqvae import predict
from keras_vqvae.data import make_dataset, read_images
from keras_vqvae.metrics.image import brain_ssim, psnr, ssim
from keras_vqvae.training import RunFolder, TrainConfig


@pytest.fixture
def run(trained_run):
    return trained_run


def test_samples_are_written_as_pngs_with_their_codes_and_a_grid(run, tmp_path):
    out = tmp_path / "samples"
    assert predict.main([str(run), "--prior", "pixelcnn", "--num-samples", "3", "--condition", "5", "--out", str(out),
                         "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["codes.npy", "grid.png", "sample_000.png", "sample_001.png", "sample_002.png"]
    image = Image.open(out / "sample_000.png")
    assert image.mode == "L" and image.size == (32, 32)
    codes = np.load(out / "codes.npy")
    assert codes.shape == (3, 8, 8) and codes.min() >= 0 and codes.max() < 16


def test_every_sampler_gives_the_same_slices_for_the_same_seed(run, tmp_path):
    images = {}
    for sampler in ("reference", "cached"):
        out = tmp_path / sampler
        assert predict.main([str(run), "--prior", "pixelcnn", "--num-samples", "2", "--seed", "4", "--sampler", sampler,
                             "--condition", "1", "--out", str(out), "--quiet"]) == 0
        images[sampler] = [np.asarray(Image.open(out / f"sample_{i:03d}.png")) for i in range(2)]
    np.testing.assert_array_equal(images["reference"], images["cached"])


def test_the_dcgan_prior_samples_the_same_way_and_repeatably(run, tmp_path):
    slices = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        assert predict.main([str(run), "--prior", "dcgan", "--num-samples", "3", "--seed", "2", "--out", str(out),
                             "--quiet"]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["codes.npy", "grid.png", "sample_000.png", "sample_001.png",
                                                         "sample_002.png"]
        slices.append(np.load(out / "codes.npy"))
    np.testing.assert_array_equal(*slices)
    assert slices[0].shape == (3, 8, 8) and slices[0].min() >= 0 and slices[0].max() < 16


def test_a_prior_the_run_does_not_hold_is_named_with_the_one_it_holds(run, tmp_path, capsys):
    only_pixelcnn = tmp_path / "run"
    shutil.copytree(run, only_pixelcnn)
    (only_pixelcnn / "dcgan.keras").unlink()
    assert predict.main([str(only_pixelcnn), "--prior", "dcgan"]) == 2
    assert capsys.readouterr().err == (
        f"error: {only_pixelcnn} holds no trained dcgan prior (dcgan.keras): it holds pixelcnn: pass --prior "
        f"pixelcnn, or train it with python -m keras_vqvae.train --run-dir {only_pixelcnn} --stage prior --prior "
        f"dcgan\n")


def test_a_folder_of_slices_is_reconstructed_and_scored(run, tmp_path, subject_slices):
    folder = write_slices(tmp_path / "mine", subject_slices[:3], case_ids=[7])
    out = tmp_path / "reconstructions"
    assert predict.main([str(run), "--reconstruct", str(folder), "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["case_007_slice_0.nii.png", "case_007_slice_1.nii.png", "case_007_slice_2.nii.png",
                     "comparison.png", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3
    # the figures of the VQ-VAE's reconstructions, which it wrote (8-bit), against the originals at the model's size
    originals = np.concatenate([batch.numpy() for batch in make_dataset(read_images(folder)[0], 32, 8)]) + 0.5
    reconstructions = keras.saving.load_model(RunFolder(run).model_path).reconstruct(originals - 0.5).numpy() + 0.5
    written = np.stack([np.asarray(Image.open(out / name)) for name in names[:3]])[..., None] / 255
    np.testing.assert_allclose(written, reconstructions, atol=0.5 / 255 + 1e-6)
    brain, has_brain = brain_ssim(originals, reconstructions)
    assert has_brain.numpy().all()
    assert metrics["ssim"] == pytest.approx(float(np.mean(ssim(originals, reconstructions).values)), rel=1e-4)
    assert metrics["brain_ssim"] == pytest.approx(float(np.mean(brain)), rel=1e-4)
    values, counted = psnr(originals, reconstructions)
    assert counted.numpy().all() and metrics["psnr"] == pytest.approx(float(np.mean(values)), rel=1e-4)
    assert metrics["brain_ssim"] != pytest.approx(metrics["ssim"], rel=1e-3)  # two figures, not one twice


@pytest.mark.parametrize("arguments, message", [
    (["--num-samples", "0"], "error: the number of samples must be a positive whole number, got 0"),
    (["--prior", "pixelcnn", "--condition", "32"], "error: condition 32 is out of range: this prior knows conditions 0 to 31"),
    (["--temperature", "-1"], "error: the temperature must be positive, got -1.0"),
    (["--batch-size", "0"], "error: --batch-size 0 is out of range"),
    (["--prior", "dcgan", "--sampler", "cached"], "error: --sampler cached is not a sampler of the dcgan prior, whose "
                                                   "samplers are noise: pick one of them, or leave --sampler out"),
    (["--prior", "dcgan", "--condition", "3"], "error: this prior was trained without a condition"),
])
def test_bad_sampling_requests_give_one_line_and_status_2_and_write_nothing(run, tmp_path, capsys, arguments,
                                                                            message):
    out = tmp_path / "samples"
    assert predict.main([str(run), *arguments, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("arguments, message", [
    (["--num-samples", "-2"], "error: the number of samples must be a positive whole number, got -2"),
    (["--seed", "-1"], "error: the seed must be between 0 and 2147483647, got -1"),
    (["--temperature", "inf"], "argument --temperature: inf is not a finite number"),
    (["--prior", "dcgan", "--sampler", "cached"], "error: --sampler cached is not a sampler of the dcgan prior"),
])
def test_sampling_arguments_are_checked_before_the_models_are_loaded(run, tmp_path, capsys, monkeypatch, arguments,
                                                                     message):
    monkeypatch.setattr(RunFolder, "load", lambda *args: pytest.fail("loaded the models"))
    try:
        status = predict.main([str(run), *arguments, "--out", str(tmp_path / "samples")])
    except SystemExit as exit_info:  # argparse's errors exit by themselves
        status = exit_info.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "samples").exists()


def test_a_run_folder_without_a_trained_vqvae_is_named(tmp_path, capsys):
    RunFolder(tmp_path / "run").write_config(TrainConfig(run_dir=str(tmp_path / "run")))
    assert predict.main([str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'run'} holds no trained VQ-VAE (vqvae.keras)")


def test_a_folder_that_is_not_a_run_is_named(tmp_path, capsys):
    assert predict.main([str(tmp_path)]) == 2
    assert "is not a run folder made by keras_vqvae.train" in capsys.readouterr().err


def test_reconstructing_a_missing_folder_is_named(run, tmp_path, capsys):
    assert predict.main([str(run), "--reconstruct", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith(f"error: data folder {tmp_path / 'nowhere'} does not exist")
