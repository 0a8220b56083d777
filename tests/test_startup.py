"""The commands start quietly: a bad input gives its one line on stderr and nothing of TensorFlow's start-up notices,
while importing the library, or TF_CPP_MIN_LOG_LEVEL=0, leaves TensorFlow's messages as they are."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_vqvae.startup import without_notices

REPO = Path(__file__).resolve().parents[1]
MISSING_DATA = ("error: data folder /no/such/folder does not exist: give the folder that holds keras_png_slices_train, "
                "_validate and _test (or any folder of PNG slices), or leave --data out for the embedded data")


def python(*arguments, **variables) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *arguments], env={**environment, "PYTHONPATH": str(REPO), **variables},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_bad_input_to_a_command_gives_its_one_line_and_nothing_else_on_stderr():
    process = python("-m", "keras_vqvae.train", "--data", "/no/such/folder")
    assert process.returncode == 2 and process.stdout == ""
    assert process.stderr.splitlines() == [MISSING_DATA]


@pytest.mark.slow
def test_tf_cpp_min_log_level_0_shows_what_tensorflow_prints_again():
    process = python("-m", "keras_vqvae.train", "--data", "/no/such/folder", TF_CPP_MIN_LOG_LEVEL="0")
    lines = process.stderr.splitlines()
    assert process.returncode == 2 and lines[-1] == MISSING_DATA and len(lines) > 1


@pytest.mark.slow
def test_importing_the_library_quiets_nothing():
    process = python("-c", "import os, keras_vqvae; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")
    assert process.returncode == 0 and process.stdout == "None\n"


def test_only_the_start_up_notices_are_dropped():
    real = "W0000 00:00:1.0  1 some_kernel.cc:12] something real went wrong\n"
    start_up = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                "I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on. You may see slightly different\n"
                "I0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be "
                "used.\n")
    cu_init = "E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
    assert without_notices(start_up + real + start_up + cu_init) == real
    assert without_notices(real + cu_init) == real + cu_init  # with a CUDA driver, cuInit's failure is an error
