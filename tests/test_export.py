import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vqvae import AnomalySettings, anomaly_maps, export, predict
from keras_vqvae.priors import CachedSampler, NoiseSampler
from keras_vqvae.priors.autoregressive import ANY_POSITION
from keras_vqvae.training import RunFolder

SIZE, GRID, K = 32, (8, 8), 16

# Runs in a fresh Python in which `import keras_vqvae` fails: only TensorFlow and the SavedModel.
REUSE = textwrap.dedent("""
    import sys
    sys.modules["keras_vqvae"] = None  # whether or not it is installed, it cannot be imported here
    try:
        import keras_vqvae
    except ImportError:
        pass
    else:
        raise SystemExit("keras_vqvae was importable")
    import numpy as np
    import tensorflow as tf

    folder, inputs, outputs = sys.argv[1:]
    model = tf.saved_model.load(folder)
    given = np.load(inputs)
    first, second = model.sample(5, 3, 0.9, 2), model.sample(5, 3, 0.9, 2)
    np.savez(outputs,
             encoded=model.encode(given["images"]).numpy(),
             encoded_uint8=model.encode(given["images_uint8"]).numpy(),
             decoded=model.decode(given["indices"]).numpy(),
             reconstructed=model.reconstruct(given["images"]).numpy(),
             served=model.signatures["serving_default"](tf.constant(given["images"]))["output_0"].numpy(),
             sampled=first["images"].numpy(), sampled_indices=first["indices"].numpy(),
             sampled_again=second["images"].numpy(), spread=model.sample(4, 1)["indices"].numpy(),
             anomaly=model.anomaly(given["images"], 5, np.array([1, 2, -1], np.int32))["maps"].numpy())
""")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """The tiny run's VQ-VAE and conditional PixelCNN, and their SavedModel, written by the command line."""
    out = tmp_path_factory.mktemp("export") / "saved_model"
    assert export.main([str(trained_run), "--out", str(out), "--prior", "pixelcnn"]) == 0
    vqvae = keras.saving.load_model(RunFolder(trained_run).model_path)
    prior = keras.saving.load_model(RunFolder(trained_run).prior_path("pixelcnn"))
    return vqvae, prior, out


@pytest.fixture(scope="module")
def loaded(exported):
    """The exported SavedModel, loaded once for the tests that only call it."""
    return tf.saved_model.load(str(exported[2]))


@pytest.mark.slow
def test_a_fresh_process_without_keras_vqvae_gets_the_keras_models_outputs(exported, trained_run, tmp_path):
    vqvae, prior, folder = exported
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, SIZE, SIZE, 1)).astype("float32")
    indices = rng.integers(0, K, size=(2, *GRID)).astype("int32")
    np.savez(tmp_path / "inputs.npz", images=images, images_uint8=np.round(images * 255).astype("uint8"),
             indices=indices)
    process = subprocess.run([sys.executable, "-c", REUSE, str(folder), str(tmp_path / "inputs.npz"),
                              str(tmp_path / "outputs.npz")], cwd=tmp_path, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    got = np.load(tmp_path / "outputs.npz")

    np.testing.assert_array_equal(got["encoded"], vqvae.encode(images - 0.5))
    np.testing.assert_array_equal(got["encoded_uint8"], vqvae.encode(np.round(images * 255) / 255 - 0.5))
    np.testing.assert_allclose(got["decoded"], vqvae.decode(indices) + 0.5, atol=1e-5)
    np.testing.assert_allclose(got["reconstructed"], vqvae.reconstruct(images - 0.5) + 0.5, atol=1e-5)
    np.testing.assert_allclose(got["served"], got["reconstructed"], atol=1e-6)
    reconstructed = got["reconstructed"]
    assert reconstructed.dtype == np.float32 and 0 <= reconstructed.min() <= reconstructed.max() <= 1

    # sample: the same seed gives the same slices twice, and the cached sampler's codes for that seed
    np.testing.assert_array_equal(got["sampled"], got["sampled_again"])
    expected = CachedSampler(prior).sample(5, seed=3, temperature=0.9, batch_size=5, condition=2)
    np.testing.assert_array_equal(got["sampled_indices"], expected)
    np.testing.assert_allclose(got["sampled"], vqvae.decode(expected) + 0.5, atol=1e-5)
    assert got["spread"].shape == (4, *GRID) and got["spread"].min() >= 0 and got["spread"].max() < K

    # anomaly: the maps anomaly_maps makes with the run's threshold and the same seed
    threshold = RunFolder(trained_run).read_anomaly_calibration("pixelcnn")["threshold"]
    expected = anomaly_maps(vqvae, prior, images, threshold, np.array([1, 2, ANY_POSITION]), AnomalySettings(seed=5))
    np.testing.assert_allclose(got["anomaly"], expected.maps, atol=1e-6)


@pytest.mark.slow
def test_the_saved_model_samples_any_position_as_the_prior_does(exported, loaded):
    np.testing.assert_array_equal(loaded.sample(3, 2, 1.0, ANY_POSITION)["indices"],
                                  CachedSampler(exported[1]).sample(3, seed=2, condition=ANY_POSITION))


@pytest.mark.slow
def test_the_dcgan_exports_its_sampling_too(trained_run, tmp_path):
    out = tmp_path / "dcgan_model"
    assert export.main([str(trained_run), "--out", str(out), "--prior", "dcgan"]) == 0
    model = tf.saved_model.load(str(out))
    dcgan = keras.saving.load_model(RunFolder(trained_run).prior_path("dcgan"))
    np.testing.assert_array_equal(model.sample(3, 7)["indices"], NoiseSampler(dcgan).sample(3, 7))
    np.testing.assert_array_equal(model.sample(3, 7, 0.5)["indices"], NoiseSampler(dcgan).sample(3, 7, 0.5))


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["pixelcnn", "dcgan"])
def test_predict_and_the_saved_model_give_the_same_slices_for_a_seed_whatever_the_batch_size(trained_run, tmp_path,
                                                                                                prior):
    out = tmp_path / "saved_model"
    assert export.main([str(trained_run), "--out", str(out), "--prior", prior]) == 0
    model = tf.saved_model.load(str(out))
    sampled = model.sample(5, 3, 0.8)  # all five at once
    for batch_size in ("1", "2"):
        predicted = tmp_path / f"predicted_{batch_size}"
        assert predict.main([str(trained_run), "--prior", prior, "--num-samples", "5", "--seed", "3", "--temperature",
                             "0.8", "--batch-size", batch_size, "--out", str(predicted), "--quiet"]) == 0
        np.testing.assert_array_equal(np.load(predicted / "codes.npy"), sampled["indices"])
        pngs = [np.asarray(Image.open(predicted / f"sample_{i:03d}.png")) for i in range(5)]
        np.testing.assert_array_equal(pngs, np.round(sampled["images"].numpy()[..., 0] * 255))


@pytest.mark.slow
def test_export_without_prior_exports_the_prior_trained_last(trained_run, tmp_path, capsys):
    """The tiny run trained its DCGAN last: export exports that, as train does (tests/test_train.py)."""
    assert RunFolder(trained_run).read_config().prior == "dcgan"
    assert export.main([str(trained_run), "--out", str(tmp_path / "saved_model")]) == 0
    assert "with a dcgan prior over its codes" in (tmp_path / "saved_model" / "README.md").read_text()


def test_an_export_without_a_prior_has_no_sample_endpoint(trained_run, tmp_path):
    out = tmp_path / "autoencoder"
    assert export.main([str(trained_run), "--out", str(out), "--prior", "none"]) == 0
    model = tf.saved_model.load(str(out))
    assert not hasattr(model, "sample") and set(model.signatures) == {"serving_default", "encode", "decode",
                                                                       "reconstruct"}


@pytest.mark.slow
def test_the_model_card_says_what_was_measured_and_how_to_rebuild(exported, trained_run):
    card = (exported[2] / "README.md").read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert "synthetic" in card and "MNI ICBM152" in card
    assert f"ssim {metrics['vqvae']['test']['ssim']:.4g}" in card
    assert f"generated_test_ssim {metrics['pixelcnn']['generation']['generated_test_ssim']:.4g}" in card
    assert "python -m keras_vqvae.train --run-dir RUN_DIR --image-size 32 " in card
    assert "--synthetic-subjects 3,1,1" in card
    assert "python -m keras_vqvae.export RUN_DIR --out saved_model --prior pixelcnn" in card
    assert str(trained_run.parent) not in card  # no folder of the machine that made it: the card travels
    assert 'tf.saved_model.load("saved_model")' in card
    assert f"model.sample(16, 0, 1.0, {exported[1].num_classes // 2})" in card
    assert f"(positions 0 to {exported[1].num_classes - 1})" in card
    assert "model.sample(16, 0, 1.0, -1)" in card  # the tiny run's prior has a null class: any position
    assert 'model.anomaly(images)["maps"]' in card  # the PixelCNN scores codes


@pytest.mark.slow
def test_the_model_cards_first_example_runs_as_written_and_the_one_liner_it_warns_of_fails(exported):
    """In a fresh Python: the card's "Load it" code, then the one-liner, which TensorFlow cannot run (the loaded
    object, freed at once, takes the variables with it). Should TensorFlow learn to, the warning can go."""
    folder = exported[2]
    card = (folder / "README.md").read_text()
    example = card.split("## Load it")[1].split("```python\n")[1].split("```")[0]
    one_liner = textwrap.dedent("""
        try:
            tf.saved_model.load("saved_model").sample(8, 0)
        except AssertionError as error:
            print(error)
    """)
    process = subprocess.run([sys.executable, "-c", example + one_liner], cwd=folder.parent, capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Called a function referencing variables which have been deleted" in process.stdout
    assert "`tf.saved_model.load(\"saved_model\").sample(8, 0)` in one expression fails" in card


@pytest.mark.slow
@pytest.mark.parametrize("call, message", [
    (lambda m: m.encode(np.zeros((2, SIZE, SIZE), np.float32)), "expected_images_of_shape_batch_32_32_1"),
    (lambda m: m.encode(np.zeros((1, 16, 16, 1), np.float32)), "expected_images_of_shape_batch_32_32_1"),
    (lambda m: m.reconstruct(np.full((1, SIZE, SIZE, 1), 2.0, np.float32)), "float images must lie in [0, 1]"),
    (lambda m: m.encode(np.zeros((1, SIZE, SIZE, 1), np.float64)), "Could not find matching concrete function"),
    (lambda m: m.decode(np.full((1, *GRID), K, np.int32)), "indices must lie in [0, 16)"),
    (lambda m: m.decode(np.zeros((1, 4, 4), np.int32)), "expected_indices_of_shape_batch_8_8"),
    (lambda m: m.sample(0, 1), "num_samples must be >= 1"),
    (lambda m: m.sample(-2, 0), "num_samples must be >= 1"),  # Python ints: constants for shape inference
    (lambda m: m.sample(2, 1, 1.0, 99), "condition must lie in [-1, 32): the slice positions this prior knows, "
                                        "or -1 for any position"),
    (lambda m: m.sample(2, 1, 1.0, -2), "condition must lie in [-1, 32)"),
    (lambda m: m.sample(2, 1, -1.0), "temperature must be positive"),
    (lambda m: m.anomaly(np.zeros((2, SIZE, SIZE, 1), np.float32), 0, np.array([3, 32], np.int32)),
     "positions must lie in [-1, 32): the slice positions this prior knows, or -1 for any position"),
    (lambda m: m.anomaly(np.zeros((2, SIZE, SIZE, 1), np.float32), 0, np.array([3], np.int32)),
     "give one position per image"),
    (lambda m: m.anomaly(np.zeros((2, SIZE, SIZE, 1), np.float32), -1), "seed must lie in [0, 2147483647]"),
    (lambda m: m.anomaly(np.zeros((1, 16, 16, 1), np.float32)), "expected_images_of_shape_batch_32_32_1"),
])
def test_bad_inputs_to_the_endpoints_say_what_was_expected(loaded, call, message):
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)) as error:
        call(loaded)
    assert message in str(error.value)


def test_a_folder_that_is_not_a_saved_model_is_not_overwritten(trained_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("precious")
    assert export.main([str(trained_run), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} exists and holds something other than a SavedModel")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_export_names_a_missing_run_or_prior(tmp_path, capsys):
    assert export.main([str(tmp_path / "nowhere")]) == 2
    assert "is not a run folder made by keras_vqvae.train" in capsys.readouterr().err


@pytest.mark.slow
def test_the_repositorys_demo_model_loads_and_samples_brain_slices():
    folder = Path(__file__).resolve().parents[1] / "saved_model"
    model = tf.saved_model.load(str(folder))
    first, second = model.sample(4, 0), model.sample(4, 0)
    images = first["images"].numpy()
    assert images.shape == (4, 128, 128, 1) and first["indices"].shape == (4, 32, 32)
    np.testing.assert_array_equal(images, second["images"])
    assert images[:, :8, :8].max() < 0.05  # a black background around...
    assert images[:, 48:80, 48:80].mean() > 0.3  # ...a bright brain in the middle, not noise
    np.testing.assert_allclose(model.decode(first["indices"]).numpy(), images, atol=1e-6)
    card = (folder / "README.md").read_text()
    assert "MNI ICBM152" in card and "python -m keras_vqvae.export" in card and "generated_test_ssim" in card
    assert "fd_ratio_to_reconstructed" in card  # judged by the anatomy metrics
    for condition in (16, -1):  # the default prior, conditioned on the slice position, draws a chosen or any level
        drawn = model.sample(2, 0, 1.0, condition)["images"].numpy()
        assert drawn.shape == (2, 128, 128, 1) and drawn[:, 48:80, 48:80].mean() > 0.3
