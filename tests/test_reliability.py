"""Faults and awkward inputs (issue 14): each ends in one line on stderr with exit status 2, before any work and
without a trace in the run folder, or is recovered from, saying so; earlier work stays intact and resumable."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import FINISHED_RUN, TINY, TINY_EXPORTING, copy_run, write_slices
from keras_vqvae import export, predict, train
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.training import RunFolder, TrainConfig
from keras_vqvae.training.fitting import Diverged, fit_resumably
from keras_vqvae.training.run_folder import CheckpointFolder

REPO = Path(__file__).resolve().parents[1]


def one_line_error(capsys, main, arguments) -> str:
    """The error a command gives for `arguments`: one line on stderr, exit status 2."""
    capsys.readouterr()
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def truncate(path: Path) -> None:
    """What a kill in the middle of writing `path` would leave, had it been written in place."""
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


class PoisonAtEpoch(keras.callbacks.Callback):
    """Turns every weight to nan when epoch `epoch` (counted from 1) begins: training diverges there."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            for variable in self.model.trainable_variables:
                variable.assign(tf.fill(variable.shape, float("nan")))


# --- 1. divergence -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_diverging_vqvae_stops_at_once_with_one_line_exports_nothing_and_the_folder_takes_a_lower_rate(tmp_path):
    run = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.run([sys.executable, "-m", "keras_vqvae.train", *TINY_EXPORTING, "--epochs", "2",
                              "--learning-rate", "1e6", "--run-dir", str(run)], env=environment, capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: training the VQ-VAE diverged: its loss became ")
    assert "in epoch 1" in errors[0] and "run again with a lower --learning-rate (now 1000000.0)" in errors[0]
    assert not (run / "vqvae.keras").exists() and not (run / "saved_model").exists()
    assert not (run / "checkpoints" / "state.json").exists()  # the diverged epoch was not kept
    assert train.main([*TINY, "--stage", "vqvae", "--epochs", "1", "--run-dir", str(run), "--quiet"]) == 0


@pytest.mark.slow
def test_a_diverging_prior_keeps_its_last_good_checkpoint_and_resumes_from_it(vqvae_run, tmp_path, capsys,
                                                                              monkeypatch):
    run = copy_run(vqvae_run, tmp_path)  # its VQ-VAE of 2 epochs done
    flags = ["--epochs", "2", "--pixelcnn-epochs", "3", "--run-dir", str(run), "--quiet"]
    kind = PRIOR_KINDS["pixelcnn"]
    monkeypatch.setitem(PRIOR_KINDS, "pixelcnn", dataclasses.replace(kind, callbacks=lambda _: [PoisonAtEpoch(2)]))
    err = one_line_error(capsys, train.main, [*TINY_EXPORTING, *flags])  # it would export, had it finished
    checkpoints = run / "pixelcnn_checkpoints"
    assert err == (f"error: training the pixelcnn prior diverged: its loss became nan in epoch 2, step 1; its "
                   f"checkpoint after epoch 1 is kept in {checkpoints} and the same command resumes from it, or give "
                   f"a lower --pixelcnn-learning-rate (now 0.001) to train the prior again from the start\n")
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 1
    assert not (run / "pixelcnn.keras").exists() and not (run / "saved_model").exists()
    assert (run / "vqvae.keras").exists()  # the VQ-VAE stage before it is whole

    monkeypatch.setitem(PRIOR_KINDS, "pixelcnn", kind)
    assert train.main([*TINY, *flags]) == 0
    assert f"resuming {checkpoints} after epoch 1 of 3" in capsys.readouterr().out
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 3


def test_divergence_is_caught_in_the_step_it_happens_before_the_epoch_is_saved(tmp_path):
    data = tf.data.Dataset.from_tensor_slices((np.ones((8, 2), "float32"), np.ones((8, 1), "float32"))).batch(4)

    def build():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    checkpoints = CheckpointFolder(tmp_path / "checkpoints")
    with pytest.raises(Diverged) as diverged:
        fit_resumably(build, checkpoints, 3, data, data, tmp_path / "logs", 0, callbacks=[PoisonAtEpoch(2)])
    assert (diverged.value.epoch, diverged.value.step, diverged.value.loss) == (2, 1, "loss")
    assert checkpoints.state()["epoch"] == 1 and not (checkpoints.path / "epoch_002.keras").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--learning-rate", "inf"], "--learning-rate inf is out of range (it must be a finite number)"),
    (["--beta", "nan"], "--beta nan is out of range (it must be a finite number)"),
    (["--dcgan-learning-rate=-inf"], "--dcgan-learning-rate -inf is out of range (it must be a finite number)"),
    (["--temperature", "inf"], "--temperature inf is out of range (it must be a finite number)"),
])
def test_non_finite_settings_are_refused(tmp_path, capsys, arguments, message):
    assert one_line_error(capsys, train.main, [*arguments, "--run-dir", str(tmp_path / "run")]).startswith(
        f"error: {message}")
    assert not (tmp_path / "run").exists()


# --- 2. damaged run files ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_kill_while_the_newest_checkpoint_was_written_resumes_from_the_one_before(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.keras")) == ["epoch_001.keras", "epoch_002.keras"]
    before = json.loads((checkpoints / "state.json").read_text())
    truncate(checkpoints / "epoch_002.keras")
    capsys.readouterr()
    assert train.main([*TINY, "--stage", "vqvae", "--epochs", "3", "--run-dir", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {checkpoints} after epoch 1 of 3 (epoch_002.keras is damaged (" in out
    assert "so the checkpoint before it is used)" in out
    after = json.loads((checkpoints / "state.json").read_text())
    assert after["epoch"] == 3 and after["history"][:1] == before["history"][:1]
    assert sorted(p.name for p in checkpoints.glob("*.keras")) == ["epoch_002.keras", "epoch_003.keras"]


def test_a_checkpoint_is_complete_under_its_name_or_absent(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    checkpoints = CheckpointFolder(tmp_path)
    checkpoints.save(model, 1, [{"loss": 1.0}], {})

    def killed(path, *args, **kwargs):  # half a file, then the process dies
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(model, 2, [{"loss": 1.0}, {"loss": 0.5}], {})
    assert not (tmp_path / "epoch_002.keras").exists()
    assert checkpoints.state()["epoch"] == 1 and checkpoints.load_model(checkpoints.state()) is not None
    monkeypatch.undo()
    checkpoints.save(model, 2, [{"loss": 1.0}, {"loss": 0.5}], {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.keras", "epoch_002.keras", "state.json",
                                                          "state_copy.json"]


@pytest.mark.slow
def test_a_damaged_state_file_is_replaced_by_its_copy_and_training_resumes(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)
    state = run / "checkpoints" / "state.json"
    before = json.loads(state.read_text())
    truncate(state)
    capsys.readouterr()
    assert train.main([*TINY, "--stage", "vqvae", "--epochs", "3", "--run-dir", str(run), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if str(state) in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {state} was damaged (JSONDecodeError: ")
    assert notes[0].endswith("replaced it with its copy state_copy.json, which records 2 finished epochs")
    after = json.loads(state.read_text())
    assert after["epoch"] == 3 and after["history"][:2] == before["history"]
    assert json.loads((run / "checkpoints" / "state_copy.json").read_text()) == after


@pytest.mark.parametrize("copy_damage, problem", [(truncate, "JSONDecodeError"), (Path.unlink, "FileNotFoundError")])
def test_a_damaged_state_file_without_an_intact_copy_is_named_before_any_work(vqvae_run, tmp_path, capsys,
                                                                              copy_damage, problem):
    run = copy_run(vqvae_run, tmp_path)
    state = run / "checkpoints" / "state.json"
    truncate(state)
    copy_damage(run / "checkpoints" / "state_copy.json")  # or a run folder from before the copy was kept
    err = one_line_error(capsys, train.main, [*TINY, "--stage", "vqvae", "--epochs", "2", "--run-dir", str(run)])
    assert err.startswith(f"error: {state} is damaged (JSONDecodeError: ")
    assert f"and its copy state_copy.json cannot replace it ({problem}: " in err
    assert err.endswith(f"restore it, or delete {run / 'checkpoints'} to train this stage again from the start\n")


def test_no_intact_checkpoint_is_named_with_what_to_do(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)
    for name in ("epoch_001.keras", "epoch_002.keras"):
        truncate(run / "checkpoints" / name)
    err = one_line_error(capsys, train.main, [*TINY, "--stage", "vqvae", "--epochs", "3", "--run-dir", str(run)])
    assert err.startswith(f"error: {run / 'checkpoints' / 'state.json'} names epoch_002.keras, which is damaged (")
    assert err.endswith(f"no earlier checkpoint is kept whole: delete {run / 'checkpoints'} to train this stage "
                        f"again from the start\n")


def test_a_damaged_model_file_is_named_by_every_command(trained_run, tmp_path, capsys, subject_slices):
    run = copy_run(trained_run, tmp_path)
    truncate(run / "vqvae.keras")
    mine = write_slices(tmp_path / "mine", subject_slices[:1], [1])
    for main, arguments in [(predict.main, [str(run), "--out", str(tmp_path / "samples")]),
                            (predict.main, [str(run), "--reconstruct", str(mine), "--out", str(tmp_path / "samples")]),
                            (export.main, [str(run), "--out", str(tmp_path / "saved_model")]),
                            (train.main, [*TINY, "--epochs", "1", "--condition", "slice", "--stage", "prior",
                                          "--run-dir", str(run)])]:
        err = one_line_error(capsys, main, arguments)
        assert err.startswith(f"error: {run / 'vqvae.keras'} is damaged (")
        assert "write it again from the run's checkpoints with its train command and --stage vqvae" in err
    assert not (tmp_path / "samples").exists() and not (tmp_path / "saved_model").exists()

    shutil.copy(trained_run / "vqvae.keras", run / "vqvae.keras")
    truncate(run / "dcgan.keras")
    err = one_line_error(capsys, predict.main, [str(run), "--prior", "dcgan", "--out", str(tmp_path / "samples")])
    assert err.startswith(f"error: {run / 'dcgan.keras'} is damaged (") and "--stage prior --prior dcgan" in err


def test_a_damaged_configuration_is_named(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    truncate(run / "config.json")
    err = one_line_error(capsys, export.main, [str(run), "--out", str(tmp_path / "saved_model")])
    assert err.startswith(f"error: {run / 'config.json'} is damaged (") and "restore it" in err


# --- 4. a failed start leaves nothing in the way -----------------------------------------------------------------

@pytest.mark.slow
def test_a_failed_start_writes_nothing_so_the_corrected_command_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder, runs/vqvae
    err = one_line_error(capsys, train.main, [*TINY, "--data", "a/typo"])
    assert err.startswith("error: data folder a/typo does not exist")
    assert not (tmp_path / "runs").exists()
    assert train.main([*TINY, "--stage", "vqvae", "--epochs", "1", "--quiet"]) == 0  # no --data: another run
    assert RunFolder("runs/vqvae").read_config().data is None


@pytest.mark.slow
def test_a_folder_holding_only_the_configuration_of_an_unfinished_start_is_not_protected(tmp_path):
    run = tmp_path / "run"
    RunFolder(run).write_config(TrainConfig(run_dir=str(run), channels=16, data="a/typo"))
    (run / "logs" / "vqvae").mkdir(parents=True)  # what a start that never finished an epoch leaves
    assert train.main([*TINY, "--stage", "vqvae", "--epochs", "1", "--run-dir", str(run), "--quiet"]) == 0
    assert RunFolder(run).read_config().channels == 8


# --- 5. checked before any work ----------------------------------------------------------------------------------

def test_wrong_inputs_are_named_before_any_work(tmp_path, capsys, subject_slices):
    (tmp_path / "a_file").write_text("not a folder")
    blank = write_slices(tmp_path / "blank", np.zeros_like(subject_slices[:2]), [1, 2, 3])
    run = tmp_path / "run"
    cases = [
        (["--image-size", "16", "--prior", "dcgan"], "error: --image-size 16 with --downsampling 4 gives 4x4 code "
         "maps, and the dcgan prior needs code maps with both sides even and at least 8: raise --image-size, lower "
         "--downsampling, or choose another --prior"),
        (["--data", str(blank)], "error: every pixel of the training slices has the same value (they are blank)"),
        (["--seed", "-1"], "error: --seed -1 is out of range (it must be between 0 and 2147483647)"),
        (["--cache", "/nonexistent/dir/prefix"], "error: --cache folder /nonexistent/dir does not exist: create it, "
                                                 "or give --cache memory or none"),
        (["--run-dir", str(tmp_path / "a_file")], f"error: --run-dir {tmp_path / 'a_file'} is a file, not a folder"),
        (["--run-dir", str(tmp_path / "a_file" / "run")], f"error: --run-dir {tmp_path / 'a_file' / 'run'} is inside "
                                                          f"{tmp_path / 'a_file'}, which is a file"),
    ]
    for arguments, message in cases:
        assert one_line_error(capsys, train.main, [*TINY, "--run-dir", str(run), *arguments]).startswith(message)
        assert not run.exists()


def test_an_image_the_pipeline_cannot_decode_is_named_before_training_or_reconstructing(trained_run, tmp_path, capsys,
                                                                                        subject_slices, monkeypatch):
    folder = write_slices(tmp_path / "slices", subject_slices[:2], [1, 2, 3])
    Image.fromarray(subject_slices[0]).save(folder / "case_002_slice_1.nii.png", "GIF")  # GIF content, PNG name
    message = f"error: {folder / 'case_002_slice_1.nii.png'} holds GIF P image data, which the pipeline cannot decode"
    err = one_line_error(capsys, train.main, [*TINY, "--data", str(folder), "--run-dir", str(tmp_path / "run")])
    assert err.startswith(message) and not (tmp_path / "run").exists()
    monkeypatch.setattr(RunFolder, "load", lambda *args: pytest.fail("loaded the run"))
    err = one_line_error(capsys, predict.main, [str(trained_run), "--reconstruct", str(folder), "--out",
                                                str(tmp_path / "reconstructions")])
    assert err.startswith(message) and not (tmp_path / "reconstructions").exists()


def test_predict_and_export_name_an_out_that_is_a_file_before_loading_anything(trained_run, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setattr(RunFolder, "load", lambda *args: pytest.fail("loaded the run"))
    (tmp_path / "a_file").write_text("not a folder")
    for main, arguments in [(predict.main, [str(trained_run)]), (predict.main, [str(trained_run), "--reconstruct",
                                                                              str(tmp_path)]),
                            (export.main, [str(trained_run)])]:
        err = one_line_error(capsys, main, [*arguments, "--out", str(tmp_path / "a_file")])
        assert err == f"error: --out {tmp_path / 'a_file'} is a file, not a folder: give a folder\n"


def test_a_symbolic_link_loop_is_named_as_one(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    err = one_line_error(capsys, train.main, [*TINY, "--data", str(loop), "--run-dir", str(tmp_path / "run")])
    assert err.startswith(f"error: {loop} is a symbolic link that leads back to itself (a loop)")
    err = one_line_error(capsys, train.main, [*TINY, "--run-dir", str(loop)])
    assert err.startswith(f"error: --run-dir {loop}: {loop} is a symbolic link that leads back to itself")


# --- 6. finished runs --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_finished_run_refuses_fewer_epochs_and_a_vqvae_rerun_keeps_the_prior_in_its_export(finished_run, tmp_path,
                                                                                              capsys):
    run = copy_run(finished_run[0], tmp_path)
    shutil.rmtree(run / "saved_model")  # the rerun's export is made anew
    flags = [*FINISHED_RUN, "--run-dir", str(run), "--quiet"]
    config = (run / "config.json").read_text()
    err = one_line_error(capsys, train.main, [*flags, "--epochs", "1"])
    assert err == (f"error: {run} holds a VQ-VAE trained for 2 epochs, more than --epochs 1: give --epochs 2 to use "
                   f"it as it is, or more to train it further\n")
    err = one_line_error(capsys, train.main, [*flags, "--pixelcnn-epochs", "1"])
    assert err.startswith(f"error: {run} holds a pixelcnn prior trained for 2 epochs, more than --pixelcnn-epochs 1")
    assert (run / "config.json").read_text() == config

    assert train.main([*flags, "--stage", "vqvae"]) == 0
    assert "exported the VQ-VAE and the pixelcnn as a SavedModel" in capsys.readouterr().out
    assert hasattr(tf.saved_model.load(str(run / "saved_model")), "sample")
    assert RunFolder(run).read_config().prior == "pixelcnn"


@pytest.mark.slow
def test_a_prior_trained_on_an_earlier_vqvae_is_left_out_of_the_export_with_a_note(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)
    flags = ["--pixelcnn-epochs", "1", "--run-dir", str(run), "--quiet"]
    assert train.main([*TINY, *flags, "--epochs", "2", "--stage", "prior"]) == 0
    capsys.readouterr()
    assert train.main([*TINY_EXPORTING, *flags, "--epochs", "3", "--stage", "vqvae"]) == 0
    out = capsys.readouterr().out
    assert "exported the VQ-VAE as a SavedModel" in out
    assert ("note: the run's pixelcnn prior was trained on an earlier VQ-VAE: train it again with --stage prior "
            "--prior pixelcnn to sample with it") in out


# --- 7. what bites on real data ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_dir_given_with_a_tilde_on_data_whose_test_split_lacks_a_position(tmp_path, capsys, monkeypatch,
                                                                             subject_slices):
    # --run-dir=~/x reaches the command with its ~; the test split holds no slice of position 7, which the others have
    monkeypatch.setenv("HOME", str(tmp_path))
    data = tmp_path / "data"
    for split, cases in (("train", [1, 2, 3]), ("validate", [4]), ("test", [5])):
        write_slices(data / f"keras_png_slices_{split}", subject_slices[:7 if split == "test" else 8], cases)
    assert train.main([*TINY_EXPORTING, "--epochs", "1", "--data", str(data), "--run-dir=~/runs/x", "--quiet"]) == 0
    run = RunFolder(tmp_path / "runs" / "x")
    assert (run.export_path / "saved_model.pb").exists() and (run.plots / "pixelcnn_by_position.png").exists()
    assert not Path("~").exists()
    card = (run.export_path / "README.md").read_text()
    assert "python -m keras_vqvae.train --data DATA --run-dir RUN_DIR" in card and str(tmp_path) not in card


def test_flags_that_would_not_act_are_refused_in_one_line(vqvae_run, tmp_path, capsys):
    run = copy_run(vqvae_run, tmp_path)
    config = (run / "config.json").read_text()
    err = one_line_error(capsys, train.main, [*TINY, "--stage", "prior", "--epochs", "5", "--run-dir", str(run)])
    assert err == ("error: --epochs 5 sets the VQ-VAE's epochs, and --stage prior trains only the prior, over the "
                   "run's VQ-VAE of 2 epochs: leave --epochs out, or train the VQ-VAE on with --stage all --epochs "
                   "5\n")
    err = one_line_error(capsys, train.main, [*TINY, "--stage", "prior", "--prior", "dcgan", "--condition", "slice",
                                              "--run-dir", str(run)])
    assert err.startswith("error: --condition slice: the dcgan prior takes no condition, so its slices could not be "
                          "asked for a position: use --condition auto or none with it")
    assert (run / "config.json").read_text() == config and not (run / "pixelcnn_checkpoints").exists()

