"""The quantizer's state stays identical on every replica of a tf.distribute strategy (its updates are all-reduced).

Runs in a subprocess: the CPU can only be split into logical devices before TensorFlow starts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
