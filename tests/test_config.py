"""The run's configuration without training: its flags (the priors' nested settings included), config.json old and
new, and the rules of what a resumed run may change."""

from __future__ import annotations

import dataclasses
import json

import pytest

from keras_vqvae import cli, train
from keras_vqvae.errors import InputError
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.savedmodel import train_flags
from keras_vqvae.settings import flag, flat_fields, shown
from keras_vqvae.training import DCGANSettings, PixelCNNSettings, RunFolder, TrainConfig, TransformerSettings

# A config.json as written before the priors' settings were nested (abridged: the keys left out keep their defaults)
FLAT_CONFIG = {"data": None, "run_dir": "runs/old", "image_size": 32, "epochs": 2, "channels": 8,
               "synthetic_subjects": [3, 1, 1], "prior": "dcgan", "condition": "auto", "pixelcnn_epochs": 3,
               "pixelcnn_filters": 8, "pixelcnn_kernel_size": 3, "transformer_dim": 64, "dcgan_epochs": 4,
               "dcgan_snapping": "binned"}
# Another value of every setting that makes a trained prior what it is
OTHER_VALUES = {
    "pixelcnn": {"batch_size": 8, "learning_rate": 2e-3, "filters": 32, "layers": 6, "kernel_size": 3,
                 "unconditional_rate": 0.0},
    "transformer": {"batch_size": 8, "learning_rate": 2e-3, "dim": 64, "layers": 2, "heads": 2,
                    "unconditional_rate": 0.0},
    "dcgan": {"batch_size": 16, "learning_rate": 1e-4, "noise_dim": 64, "filters": 32, "snapping": "binned"},
}


def test_each_prior_has_its_settings_under_its_name():
    config = TrainConfig()
    for kind in PRIOR_KINDS.values():
        assert type(getattr(config, kind.name)) is kind.settings
    with pytest.raises(TypeError, match="pixelcnn must be a PixelCNNSettings"):
        TrainConfig(pixelcnn={"epochs": 4})


def test_config_json_nests_each_priors_settings_and_reads_back(tmp_path):
    config = TrainConfig(run_dir=str(tmp_path / "run"), synthetic_subjects=(3, 1, 1), judge_epochs=3,
                         pixelcnn=PixelCNNSettings(epochs=4, filters=8), dcgan=DCGANSettings(snapping="binned"))
    run = RunFolder(config.run_dir)
    run.write_config(config)
    written = json.loads((run.path / "config.json").read_text())
    assert written["pixelcnn"] == dataclasses.asdict(PixelCNNSettings(epochs=4, filters=8))
    assert written["dcgan"]["snapping"] == "binned" and written["judge_epochs"] == 3
    assert not any(key.startswith(("pixelcnn_", "transformer_", "dcgan_")) for key in written)
    assert run.read_config() == config


def test_a_config_json_with_the_priors_settings_flat_still_reads_and_resumes(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    (run.path / "config.json").write_text(json.dumps(FLAT_CONFIG, indent=2))
    expected = TrainConfig(run_dir="runs/old", image_size=32, epochs=2, channels=8, synthetic_subjects=(3, 1, 1),
                           prior="dcgan", pixelcnn=PixelCNNSettings(epochs=3, filters=8, kernel_size=3),
                           transformer=TransformerSettings(dim=64), dcgan=DCGANSettings(epochs=4, snapping="binned"))
    saved = run.read_config()
    assert saved == expected
    expected.check_resumable_from(saved)  # the same flags resume it
    # the tag its prior's checkpoints recorded, under the same names: they are not trained again
    assert saved.prior_tag(PRIOR_KINDS["pixelcnn"]) == {
        "condition": "auto", "pixelcnn_batch_size": "16", "pixelcnn_learning_rate": "0.001", "pixelcnn_filters": "8",
        "pixelcnn_layers": "12", "pixelcnn_kernel_size": "3", "pixelcnn_unconditional_rate": "0.1"}
    assert saved.prior_tag(PRIOR_KINDS["dcgan"]) == {
        "dcgan_batch_size": "32", "dcgan_learning_rate": "0.0002", "dcgan_noise_dim": "128", "dcgan_filters": "64",
        "dcgan_snapping": "binned"}


def test_help_lists_every_setting_with_its_help_and_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per flag: argparse breaks lines at hyphens too
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, (_, field) in flat_fields(TrainConfig).items():  # the priors' settings too: --pixelcnn-epochs, ...
        assert f" {flag(name)} " in out
        described = " ".join(field.metadata["help"].split())
        if not isinstance(field.default, bool) and field.default is not None:
            described += f" (default: {shown(field.default)})"
        assert described in out, name
    assert all(f"--{kind}-epochs" in out for kind in PRIOR_KINDS)
    assert "cosine to 2% of it" in out  # a literal percent sign survives argparse


def test_the_flags_fill_the_nested_settings():
    parser = cli.ArgumentParser()
    cli.add_config_arguments(parser, TrainConfig)
    arguments = parser.parse_args(["--epochs", "2", "--pixelcnn-epochs", "3", "--dcgan-snapping", "binned"])
    assert cli.given_fields(TrainConfig, arguments) == {"epochs", "pixelcnn_epochs", "dcgan_snapping"}
    config = cli.config_from_arguments(TrainConfig, arguments)
    assert config == TrainConfig(epochs=2, pixelcnn=PixelCNNSettings(epochs=3), dcgan=DCGANSettings(snapping="binned"))
    assert train_flags(config) == "--epochs 2 --pixelcnn-epochs 3 --dcgan-snapping binned"  # the model card's command


def test_the_model_cards_train_flags_rebuild_the_configuration():
    parser = cli.ArgumentParser()
    cli.add_config_arguments(parser, TrainConfig)
    config = TrainConfig(channels=16, synthetic_subjects=(3, 1, 1), jit_compile=True, transformer=TransformerSettings(
        dim=64, heads=2), dcgan=DCGANSettings(learning_rate=1e-4))
    assert cli.config_from_arguments(TrainConfig, parser.parse_args(train_flags(config).split())) == config


@pytest.mark.parametrize("arguments, message", [
    (["--pixelcnn-epochs", "0"], "error: --pixelcnn-epochs 0 is out of range (it must be at least 1): training epochs "
                                 "of the prior"),
    (["--transformer-unconditional-rate", "1"], "error: --transformer-unconditional-rate 1.0 is out of range"),
    (["--dcgan-learning-rate", "0"], "error: --dcgan-learning-rate 0.0 is out of range (it must be positive)"),
    (["--judge-epochs", "0"], "error: --judge-epochs 0 is out of range (it must be at least 1)"),
])
def test_an_out_of_range_setting_gives_one_line_naming_its_flag_and_status_2(tmp_path, capsys, arguments, message):
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_the_resume_rules_name_real_settings():
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    assert TrainConfig.RESUMABLE | TrainConfig.RETRAINS_PRIOR <= names
    for kind in PRIOR_KINDS.values():
        assert TrainConfig.PRIOR_RESUMABLE <= {field.name for field in dataclasses.fields(kind.settings)}


def test_a_resumed_run_may_change_the_resumable_and_the_priors_settings_only():
    saved = TrainConfig()
    TrainConfig(run_dir="moved", epochs=50, prior="dcgan", cache="none", num_generated=16, temperature=0.9,
                judge_epochs=3, jit_compile=True, condition="none", pixelcnn=PixelCNNSettings(filters=8, epochs=1),
                dcgan=DCGANSettings(snapping="binned")).check_resumable_from(saved)
    with pytest.raises(InputError) as error:
        TrainConfig(image_size=64, channels=16, epochs=50, pixelcnn=PixelCNNSettings(filters=8)
                    ).check_resumable_from(saved)
    assert str(error.value) == ("runs/vqvae holds a run made with --image-size 128 (now 64), --channels 32 (now 16): "
                                "repeat those flags to resume it, or give a new --run-dir")


def test_a_priors_own_setting_changes_that_priors_tag_only_and_its_epochs_none():
    config = TrainConfig()
    tags = {name: config.prior_tag(kind) for name, kind in PRIOR_KINDS.items()}
    for prior, values in OTHER_VALUES.items():
        fields = {field.name for field in dataclasses.fields(PRIOR_KINDS[prior].settings)}
        assert set(values) == fields - TrainConfig.PRIOR_RESUMABLE
        for name, value in [*values.items(), ("epochs", 1)]:
            settings = dataclasses.replace(getattr(config, prior), **{name: value})
            changed = dataclasses.replace(config, **{prior: settings})
            differ = {other: {key for key, shown_value in changed.prior_tag(kind).items()
                              if tags[other][key] != shown_value} for other, kind in PRIOR_KINDS.items()}
            assert differ == {other: {f"{prior}_{name}"} if other == prior and name != "epochs" else set()
                              for other in PRIOR_KINDS}, (prior, name)
    conditioned = dataclasses.replace(config, condition="none")
    assert {name for name, kind in PRIOR_KINDS.items() if conditioned.prior_tag(kind) != tags[name]} == {
        name for name, kind in PRIOR_KINDS.items() if kind.conditional}
