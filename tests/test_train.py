import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import FINISHED_RUN, TINY, TINY_EXPORTING, copy_run, write_slices
from keras_vqvae import generate, make_dataset, train
from keras_vqvae.data import SubjectSplit, load_slices
from keras_vqvae.metrics.generation import real_sample
from keras_vqvae.training import RunFolder, TrainConfig
from keras_vqvae.training.scoring import judge_training_sets

REPO = Path(__file__).resolve().parents[1]
GENERATION_METRICS = ("generated_test_ssim", "test_matched_above_0_6", "nearest_train_ssim", "real_nearest_train_ssim",
                      "diversity_ms_ssim", "real_diversity_ms_ssim")


def run_command(*arguments, **kwargs):
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "keras_vqvae.train", *arguments], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def softmax(logits: np.ndarray) -> np.ndarray:
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def entropy_bits(values: np.ndarray) -> float:
    """The entropy in bits of the histogram of `values` (n,) ints."""
    frequencies = np.bincount(values) / len(values)
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log2(frequencies)).sum())


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_the_whole_run_folder(finished_run):
    run, out = finished_run
    assert "VQ-VAE test: ssim" in out and "generation: generated_test_ssim" in out
    assert any(line.startswith("pixelcnn test: ") and "nll" in line for line in out.splitlines())
    for name in ("config.json", "vqvae.keras", "metrics.json", "history.csv", "plots/loss.png",
                 "plots/reconstructions.png", "plots/code_maps.png", "plots/codebook_usage.png",
                 "checkpoints/state.json", "checkpoints/epoch_002.keras",
                 "codes.npz", "pixelcnn.keras", "pixelcnn_history.csv", "pixelcnn_checkpoints/epoch_002.keras",
                 "plots/pixelcnn_loss.png", "plots/pixelcnn_samples.png", "saved_model/saved_model.pb",
                 "saved_model/README.md", "position_network.keras", "plots/pixelcnn_positions.png",
                 "plots/pixelcnn_by_position.png"):
        assert (run / name).is_file(), name
    for picture in ("pixelcnn_positions.png", "pixelcnn_by_position.png"):
        with Image.open(run / "plots" / picture) as image:
            assert image.format == "PNG" and min(image.size) >= 300, picture
    assert "exported the VQ-VAE and the pixelcnn as a SavedModel" in out
    for stage in ("encoding every split into code maps", "evaluating vqvae on the test split",
                  "evaluating gated_pixelcnn on the test split", "comparing 4 generated slices"):
        assert stage in out, stage
    assert list((run / "logs" / "vqvae").rglob("events.out.tfevents.*"))
    assert list((run / "logs" / "pixelcnn").rglob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["vqvae"]["epochs"] == 2 and metrics["vqvae"]["train_images_per_second"] > 0
    assert set(metrics["vqvae"]["test"]) >= {"ssim", "brain_ssim", "psnr", "codebook_usage", "perplexity", "loss"}
    assert metrics["pixelcnn"]["epochs"] == 2 and set(metrics["pixelcnn"]["test"]) == {"loss", "nll", "accuracy"}
    generation = metrics["pixelcnn"]["generation"]
    assert set(generation) >= set(GENERATION_METRICS)
    # judged by the run's position network, on the 4 generated slices against as many real and reconstructed ones
    assert generation["anatomy_slices"] == 4 and 0 < generation["fd_real"] and 0 < generation["fd_reconstructed"]
    assert generation["fd_ratio_to_reconstructed"] == pytest.approx(generation["fd"] / generation["fd_reconstructed"])
    network = keras.saving.load_model(run / "position_network.keras")
    assert network.num_positions == 32
    config, vqvae, prior = RunFolder(run).load("pixelcnn")
    generated = generate(vqvae, prior, 4, seed=config.seed, temperature=config.temperature).images  # the run's 4 again
    slices = load_slices(None, synthetic_subjects=SubjectSplit(3, 1, 1))
    test, validate = (np.concatenate([b.numpy() for b in make_dataset(split, 32, 64)]) + 0.5
                      for split in (slices.test, slices.validate))
    reconstructions = vqvae.reconstruct(validate - 0.5).numpy() + 0.5
    probabilities = {name: softmax(network(images, training=False).numpy())  # (4, 32) each
                     for name, images in (("generated", generated), ("test", real_sample(test, 4, config.seed)),
                                          ("reconstructed", real_sample(reconstructions, 4, config.seed)))}
    for name, key in (("generated", "position_confidence"), ("test", "real_position_confidence"),
                      ("reconstructed", "reconstructed_position_confidence")):  # the mean top probability
        assert generation[key] == pytest.approx(probabilities[name].max(axis=1).mean(), rel=1e-4), key
    for name, key in (("generated", "position_entropy_bits"), ("test", "real_position_entropy_bits")):
        assert generation[key] == pytest.approx(entropy_bits(probabilities[name].argmax(axis=1)), abs=1e-6), key
    assert "synthetic" in metrics["data"]
    with np.load(run / "codes.npz") as codes:
        assert codes["train"].shape == (96, 8, 8) and codes["test"].shape == (32, 8, 8)
    config = RunFolder(run).read_config()
    assert config.image_size == 32 and config.synthetic_subjects == (3, 1, 1)
    model = keras.saving.load_model(run / "vqvae.keras")
    assert model.encode(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 8, 8)
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,")


@pytest.mark.slow
def test_killed_run_resumes_losing_at_most_the_epoch_in_progress(tmp_path):
    run = tmp_path / "run"
    process = run_command(*TINY, "--stage", "vqvae", "--epochs", "60", "--run-dir", str(run))
    state_file = run / "checkpoints" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.3)  # land somewhere inside a later epoch or checkpoint
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = json.loads(state_file.read_text())
    done = before["epoch"]
    assert (run / "checkpoints" / before["checkpoint"]).exists()

    resumed = run_command(*TINY, "--stage", "vqvae", "--epochs", str(done + 1), "--run-dir", str(run))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming {run / 'checkpoints'} after epoch {done} of {done + 1}" in out
    after = json.loads(state_file.read_text())
    assert after["epoch"] == done + 1 and after["history"][:done] == before["history"]
    assert json.loads((run / "metrics.json").read_text())["vqvae"]["epochs"] == done + 1


@pytest.mark.slow
def test_rerunning_a_finished_run_trains_no_more(finished_run, tmp_path, capsys):
    run = copy_run(finished_run[0], tmp_path)
    checkpoints = [(run / folder / "epoch_002.keras").stat().st_mtime_ns for folder in ("checkpoints",
                                                                                        "pixelcnn_checkpoints")]
    assert train.main([*FINISHED_RUN, "--no-export", "--run-dir", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "evaluating" not in out and "step" not in out  # --quiet: no stage messages, no progress bars
    assert "VQ-VAE test: ssim" in out  # but the figures
    assert f"resuming {run / 'checkpoints'} after epoch 2" in out
    assert f"resuming {run / 'pixelcnn_checkpoints'} after epoch 2" in out
    assert [(run / folder / "epoch_002.keras").stat().st_mtime_ns
            for folder in ("checkpoints", "pixelcnn_checkpoints")] == checkpoints


@pytest.mark.slow
def test_the_prior_stage_continues_a_vqvae_run_and_restarts_when_the_vqvae_changed(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)  # a VQ-VAE of 2 epochs
    assert not (run / "pixelcnn.keras").exists()
    assert train.main([*TINY, "--stage", "prior", "--epochs", "2", "--run-dir", str(run)]) == 0
    assert (run / "pixelcnn.keras").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"vqvae", "pixelcnn"} <= set(metrics)  # the prior stage keeps the VQ-VAE's figures
    capsys.readouterr()
    assert train.main([*TINY, "--epochs", "3", "--run-dir", str(run)]) == 0  # one more VQ-VAE epoch: new codes
    out = capsys.readouterr().out
    assert "encoding every split into code maps" in out and "so it starts afresh" in out
    assert json.loads((run / "pixelcnn_checkpoints" / "state.json").read_text())["vqvae_epochs"] == 3


@pytest.mark.slow
def test_a_dcgan_joins_the_pixelcnn_on_the_same_vqvae_and_resumes_and_train_exports_it(finished_run, tmp_path,
                                                                                       capsys):
    run = copy_run(finished_run[0], tmp_path)
    assert RunFolder(run).read_config().prior == "pixelcnn"  # config.json records the prior trained
    assert train.main([*TINY_EXPORTING, "--stage", "prior", "--prior", "dcgan", "--dcgan-epochs", "2",
                       "--run-dir", str(run)]) == 0
    assert RunFolder(run).read_config().prior == "dcgan"
    out = capsys.readouterr().out
    assert "exported the VQ-VAE and the dcgan as a SavedModel" in out  # the prior trained last
    assert "with a dcgan prior over its codes" in (run / "saved_model" / "README.md").read_text()
    assert "encoding every split" not in out  # the same code maps
    assert any(line.startswith("dcgan test: ") and "discriminator_loss" in line for line in out.splitlines())
    for name in ("pixelcnn.keras", "dcgan.keras", "dcgan_history.csv", "dcgan_checkpoints/epoch_002.keras",
                 "plots/dcgan_loss.png", "plots/dcgan_samples.png"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "dcgan").rglob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"vqvae", "pixelcnn", "dcgan"} <= set(metrics)
    assert set(metrics["dcgan"]["test"]) == {"generator_loss", "discriminator_loss", "real_score", "fake_score"}
    assert set(metrics["dcgan"]["generation"]) >= set(GENERATION_METRICS)
    history = json.loads((run / "dcgan_checkpoints" / "state.json").read_text())["history"]
    assert len(history) == 2 and all(0 < row["diversity_ms_ssim"] <= 1 for row in history)  # watched every epoch
    assert "diversity_ms_ssim" in (run / "dcgan_history.csv").read_text().splitlines()[0]

    # raising the epochs resumes the DCGAN where it stopped, both optimizers included
    assert train.main([*TINY, "--stage", "prior", "--prior", "dcgan", "--dcgan-epochs", "3", "--run-dir",
                       str(run)]) == 0
    assert f"resuming {run / 'dcgan_checkpoints'} after epoch 2 of 3" in capsys.readouterr().out
    state = json.loads((run / "dcgan_checkpoints" / "state.json").read_text())
    assert state["epoch"] == 3 and state["history"][:2] == history
    dcgan = keras.saving.load_model(run / "dcgan.keras")
    steps = 3 * (96 // 16)
    assert dcgan.generator_optimizer.iterations.numpy() == dcgan.discriminator_optimizer.iterations.numpy() == steps


@pytest.mark.slow
def test_changing_a_priors_settings_retrains_that_prior_only(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)  # its DCGAN trained with --dcgan-snapping nearest, the default
    vqvae_checkpoint = (run / "checkpoints" / "epoch_001.keras").stat().st_mtime_ns
    assert train.main([*TINY, "--epochs", "1", "--prior", "dcgan", "--run-dir", str(run), "--dcgan-snapping",
                       "binned"]) == 0
    out = capsys.readouterr().out
    assert "dcgan_snapping nearest (now binned)" in out and "so it starts afresh" in out
    assert (run / "dcgan_checkpoints_stale" / "epoch_001.keras").exists()
    assert (run / "checkpoints" / "epoch_001.keras").stat().st_mtime_ns == vqvae_checkpoint
    assert keras.saving.load_model(run / "dcgan.keras").snapping == "binned"
    assert RunFolder(run).read_config().dcgan.snapping == "binned"


def test_a_config_json_from_before_the_prior_was_recorded_still_reads(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_config(TrainConfig(run_dir=str(run.path), channels=8))
    values = json.loads((run.path / "config.json").read_text())
    del values["prior"]
    (run.path / "config.json").write_text(json.dumps(values))
    assert run.read_config() == TrainConfig(run_dir=str(run.path), channels=8, prior="pixelcnn")


def test_the_prior_stage_needs_a_trained_vqvae(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, "--stage", "prior", "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err == (f"error: {run} holds no trained VQ-VAE (vqvae.keras): train it with python -m "
                                       f"keras_vqvae.train --run-dir {run} (--stage vqvae or all)\n")


def test_changed_settings_for_an_existing_run_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    RunFolder(run).write_config(TrainConfig(run_dir=str(run), channels=8))
    (run / "checkpoints").mkdir()  # an epoch has finished
    (run / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "checkpoint": "epoch_001.keras",
                                                                "history": [{"loss": 1.0}]}))
    assert train.main(["--run-dir", str(run), "--channels", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {run} holds a run made with --channels 8 (now 16): repeat those flags to resume it, "
                   f"or give a new --run-dir")


@pytest.mark.parametrize("arguments, message", [
    (["--data", "/no/such/folder"], "error: data folder /no/such/folder does not exist"),
    (["--image-size", "100", "--downsampling", "8"], "error: --image-size 100 is not divisible by --downsampling 8"),
    (["--downsampling", "6"], "error: --downsampling 6 is out of range"),
    (["--epochs", "0"], "error: --epochs 0 is out of range (it must be at least 1): number of training epochs"),
    (["--synthetic-subjects", "3,0,1"], "error: --synthetic-subjects 3,0,1 is out of range"),
    (["--pixelcnn-kernel-size", "4"], "error: --pixelcnn-kernel-size 4 is out of range"),
    (["--dcgan-batch-size", "1"], "error: --dcgan-batch-size 1 is out of range"),
    (["--strategy", "multi-worker"], "error: --strategy multi-worker needs the TF_CONFIG environment variable"),
    (["--strategy", "multi-worker", "--condition", "slice"], "error: --condition slice does not train under "
                                                             "--strategy multi-worker yet"),
    (["--temperature", "0"], "error: --temperature 0.0 is out of range (it must be positive)"),
    (["--adversarial-weight", "0.1", "--adversarial-start-epoch", "5", "--epochs", "5"],
     "error: --adversarial-start-epoch 5 is not below --epochs 5, so the adversarial term would never act"),
    (["--adversarial-weight", "-1"], "error: --adversarial-weight -1.0 is out of range (it must be at least 0)"),
    (["--prior", "transformer", "--transformer-dim", "30"], "error: --transformer-dim 30 is not a multiple of "
                                                            "--transformer-heads 4: each head takes an equal share "
                                                            "of the width, so pick e.g. --transformer-dim 32"),
])
def test_bad_settings_give_one_line_and_status_2(tmp_path, capsys, arguments, message):
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_a_state_file_naming_a_missing_checkpoint_is_reported_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    RunFolder(run).write_config(TrainConfig(run_dir=str(run)))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 3, "checkpoint": "epoch_003.keras",
                                                                "history": [{"loss": 1.0}] * 3}))
    assert train.main(["--run-dir", str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {run / 'checkpoints' / 'state.json'} names epoch_003.keras, "
                                              f"which is missing")


def test_a_run_dir_that_is_not_a_run_is_left_alone(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("precious")
    assert train.main([*TINY, "--run-dir", str(tmp_path)]) == 2
    assert "is not a keras_vqvae run folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


@pytest.mark.slow
def test_bad_flags_on_the_command_line_exit_2_with_one_line():
    process = run_command("--epochs", "many")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and out == ""
    assert err.splitlines() == ["python -m keras_vqvae.train: error: argument --epochs: invalid int value: 'many' "
                                "(see python -m keras_vqvae.train --help)"]  # and nothing of TensorFlow's start-up


@pytest.mark.slow
def test_the_judge_learns_extra_subjects_of_the_embedded_data_that_no_split_holds(tmp_path, subject_slices):
    config = TrainConfig(synthetic_subjects=(3, 1, 1), judge_subjects=2)
    slices = load_slices(None, synthetic_subjects=SubjectSplit(3, 1, 1))
    sets = judge_training_sets(config, slices)
    assert [s.name for s in sets] == ["train", "extra"]
    assert sets[0] is slices.train and sets[1].num_subjects == 2 and len(sets[1]) == 64
    judged = {case for s in sets for case in s.case_ids}
    held_out = set(slices.validate.case_ids) | set(slices.test.case_ids)
    assert judged.isdisjoint(held_out) and len(judged) == 5
    assert sets[1].slice_numbers == tuple(range(32)) * 2
    assert judge_training_sets(dataclasses.replace(config, judge_subjects=0), slices) == [slices.train]
    folder = write_slices(tmp_path / "slices", subject_slices, range(1, 11))
    own = load_slices(folder)
    assert judge_training_sets(dataclasses.replace(config, data=str(folder)), own) == [own.train]


@pytest.mark.slow
def test_a_run_with_the_adversarial_term_logs_its_losses_and_resumes_it(tmp_path, capsys):
    run = tmp_path / "run"
    adversarial = ["--adversarial-weight", "0.1", "--adversarial-start-epoch", "1", "--discriminator-filters", "4"]
    assert train.main([*TINY_EXPORTING, *adversarial, "--epochs", "2", "--stage", "vqvae", "--run-dir",
                       str(run)]) == 0
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"adversarial_loss", "discriminator_loss", "adaptive_weight"} <= set(header)
    assert list((run / "logs" / "vqvae").rglob("events.out.tfevents.*"))
    exported = tf.saved_model.load(str(run / "saved_model"))  # encode and decode, without the discriminator
    assert exported.decode(exported.encode(np.zeros((1, 32, 32, 1), np.float32))).shape == (1, 32, 32, 1)
    model = keras.saving.load_model(run / "vqvae.keras")
    steps = model.optimizer.iterations.numpy()
    assert model.adversarial_start_step == steps // 2 > 0  # epoch 1's steps: the term acted in the second epoch only
    assert model.discriminator_optimizer.iterations.numpy() == steps
    assert train.main([*TINY, "--epochs", "2", "--stage", "vqvae", "--run-dir", str(run)]) == 2  # settings changed
    assert "--adversarial-weight 0.1 (now 0.0)" in capsys.readouterr().err
    assert train.main([*TINY, *adversarial, "--epochs", "3", "--stage", "vqvae", "--run-dir", str(run)]) == 0
    assert f"resuming {run / 'checkpoints'} after epoch 2" in capsys.readouterr().out
    resumed = keras.saving.load_model(run / "vqvae.keras")
    assert resumed.discriminator_optimizer.iterations.numpy() == resumed.optimizer.iterations.numpy() == steps * 3 // 2
