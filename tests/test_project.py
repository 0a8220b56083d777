"""Promises about the project itself: the README's two set-up commands, CI, and what the installed package carries."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def set_up_commands():
    section = REPO.joinpath("README.md").read_text().split("## Set-up on a fresh machine")[1].split("\n## ")[0]
    return re.findall(r"^    (python3 .+)$", section, flags=re.MULTILINE)


def test_the_readme_gives_exactly_two_set_up_commands_and_ci_runs_the_test_one():
    main_job, tests = set_up_commands()
    assert main_job.endswith("python3 -m keras_vqvae.train") and tests.endswith("python3 -m pytest")
    ci_lines = [line for line in REPO.joinpath(".ci/run").read_text().splitlines() if line.startswith("python3")]
    assert ci_lines == [tests]


def test_the_wheel_carries_the_template_its_notice_and_the_manifest(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, cwd=tmp_path)
    with zipfile.ZipFile(next(tmp_path.glob("keras_vqvae-*.whl"))) as wheel:
        names = set(wheel.namelist())
        notice = wheel.read("keras_vqvae/data/resources/NOTICE").decode()
    for name in ("mni152_2009a_1mm.npz", "oasis_keras_png_slices_manifest.csv.gz"):
        assert f"keras_vqvae/data/resources/{name}" in names
    package = {str(path.relative_to(REPO)) for path in REPO.joinpath("keras_vqvae").rglob("*.py")}
    assert package <= names and "keras_vqvae/priors/pixelcnn_sampling.py" in package
    assert "Louis Collins" in notice and "McGill University" in notice


@pytest.mark.slow
def test_the_package_guide_names_every_command():
    guide = subprocess.run([sys.executable, "-m", "keras_vqvae"], capture_output=True, text=True, cwd=REPO,
                           check=True).stdout
    for command in ("keras_vqvae.train", "keras_vqvae.predict", "keras_vqvae.export", "keras_vqvae.detect",
                    "keras_vqvae.data verify", "keras_vqvae.data make-sample", "keras_vqvae.data make-lesions"):
        assert f"python -m {command}" in guide
