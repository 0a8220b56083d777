"""The quantizer's state stays identical on every replica of a tf.distribute strategy (its updates are all-reduced).

Runs in a subprocess: the CPU can only be split into logical devices before TensorFlow starts.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vqvae import VQVAE, GatedPixelCNN
from conftest import TINY

SCRIPT = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_vqvae import VQVAE, Decoder, Encoder, VectorQuantizer
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
x = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 32, 32, 1)).astype("float32")
with strategy.scope():
    model = VQVAE(Encoder(8, 16, 1), VectorQuantizer(16, 8, dead_code_steps=1), Decoder(8, 16, 1), data_variance=0.08)
    model.compile(optimizer="adam")
model.fit(x, batch_size=8, epochs=2, verbose=0)
state = {v.name: [t.numpy().tolist() for t in v.value.values] for v in model.quantizer.weights}
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "state": state}))
"""


@pytest.mark.slow
def test_quantizer_state_agrees_across_replicas_after_ema_updates_and_restarts():
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    for name, copies in report["state"].items():
        assert len(copies) == 2 and copies[0] == copies[1], name
    assert report["state"]["updates"][0] == 4  # 2 epochs x 2 global steps, each counted once
    assert report["state"]["restarts"][0] > 0  # restarts happened, and every replica took the same vectors


STEP_SCRIPT = """
import json, sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_vqvae import VQVAE, Decoder, Encoder, GatedPixelCNN, VectorQuantizer

name = sys.argv[1]
rng = np.random.default_rng(0)
if name == "vqvae":
    data = rng.uniform(-0.5, 0.5, (8, 32, 32, 1)).astype("float32")
    def build():
        return VQVAE(Encoder(8, 16, 1), VectorQuantizer(16, 8, dead_code_steps=0), Decoder(8, 16, 1),
                     data_variance=0.08)
else:
    data = rng.integers(0, 16, (8, 8, 8)).astype("int32")
    def build():
        return GatedPixelCNN(16, (8, 8), filters=8, layers=2, kernel_size=3)

models, weights = [], None
for make_strategy in (tf.distribute.get_strategy, lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    with make_strategy().scope():
        keras.utils.set_random_seed(1)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(0.1))  # Adam's first step is lr * sign(gradient): rounding-fragile
    weights = model.get_weights() if weights is None else weights
    model.set_weights(weights)
    model.fit(data, batch_size=8, epochs=1, verbose=0, shuffle=False)  # one step on the whole batch
    models.append(model)
single, mirrored = ([np.asarray(w) for w in m.get_weights()] for m in models)
print(json.dumps({"replicas": models[1].distribute_strategy.num_replicas_in_sync,
                  "largest_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)),
                  "largest_change": max(float(np.abs(a - b).max()) for a, b in zip(weights, single))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vqvae", "pixelcnn"])
def test_one_mirrored_step_over_two_replicas_matches_one_step_on_one_device(model):
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", STEP_SCRIPT, model], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["largest_change"] > 1e-3  # the step did move the weights...
    assert report["largest_difference"] < 1e-5, report  # ...by the same amount with two replicas


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_this_machine_train_one_run_in_step(tmp_path):
    """`--strategy multi-worker` as the README launches it, with both workers on localhost: both finish, and their
    VQ-VAEs and PixelCNNs are the same model (every update was all-reduced)."""
    repo = Path(__file__).resolve().parents[1]
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        environment = {**os.environ, "PYTHONPATH": str(repo),
                       "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "keras_vqvae.train", *TINY, "--epochs", "1", "--strategy", "multi-worker",
             "--quiet", "--run-dir", str(tmp_path / f"worker{index}")],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for worker in workers:
        _, errors = worker.communicate(timeout=600)
        assert worker.returncode == 0, errors[-2000:]
    for model, kind in (("vqvae.keras", VQVAE), ("pixelcnn.keras", GatedPixelCNN)):
        first, second = (keras.saving.load_model(tmp_path / f"worker{index}" / model) for index in (0, 1))
        assert isinstance(first, kind) and isinstance(second, kind)
        for a, b in zip(first.weights, second.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{model}: {a.path}")
