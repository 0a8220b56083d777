"""OASIS rehearsal: what a run on the real OASIS slices costs, measured on a folder of OASIS's size and layout, as JSON.

    python benchmarks/oasis_rehearsal.py --folder /tmp/rehearsal          # 302/35/17 subjects, 1 + 1 epochs
    python benchmarks/oasis_rehearsal.py --folder /tmp/rehearsal --epochs 2 --pixelcnn-epochs 1

OASIS (the preprocessed `keras_png_slices_data`) holds 9,664 training, 1,120 validation and 544 test slices of 256x256
(302, 35 and 17 subjects of 32 slices). It cannot be downloaded here, so the rehearsal writes as many virtual
subjects in its layout (`python -m keras_vqvae.data make-sample FOLDER --subjects 302,35,17`, kept for later runs)
and trains on them exactly as a user with OASIS would: `python -m keras_vqvae.train --data FOLDER` with the default
settings, for fewer epochs. It measures

* the folder: seconds to write it (once) and its size;
* reading it: seconds to scan every file (the checks made before any work), and, with `--cache PREFIX`, seconds to
  decode, resize and cache each split on disk, and the disk the cache takes;
* the run, from the time each line of its output arrived: seconds per VQ-VAE epoch and per prior epoch (from its
  history), encoding the splits, what follows the prior's training (evaluation, calibration, 256 samples and their
  scoring against the training slices; the slice-position network that judges them, trained then; their anatomy,
  the pictures and the export), the whole run, and the peak memory of its process;

then estimates the whole default run (40 VQ-VAE epochs, 12 PixelCNN epochs) on this machine from those parts.
Progress goes to stderr and the JSON alone to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hardware
from keras_vqvae import cli
from keras_vqvae.data import SubjectSplit, make_dataset, read_folder
from keras_vqvae.data.synthetic import write_sample
from keras_vqvae.training import TrainConfig

OASIS_SUBJECTS = SubjectSplit(302, 35, 17)
# Lines of the train command's output that end one phase and start the next, in order (its output when it is not a
# terminal; Keras prints no "Epoch 1/1" line for a single epoch, so no epoch line is one of them).
MILESTONES = {"read": "OASIS layout at", "vqvae_trained": "evaluating vqvae on the validate split",
              "encoding": "encoding every split", "prior_trained": "evaluating gated_pixelcnn on the validate split",
              "judge": "training the slice-position network", "judging": "judging the generated slices",
              "exported": "exported the VQ-VAE"}


def _megabytes(paths) -> float:
    return round(sum(path.stat().st_size for path in paths if path.is_file()) / 2**20, 1)


def _history_seconds(path: Path) -> list[float]:
    with open(path) as file:
        return [round(float(row["seconds"]), 1) for row in csv.DictReader(file)]


def reading(folder: Path, cache_folder: Path, image_size: int) -> dict:
    """Seconds to scan the folder, and to decode, resize and cache each split on disk; the cache's size."""
    started = time.perf_counter()
    slices = read_folder(folder)
    scanned = time.perf_counter() - started
    shutil.rmtree(cache_folder, ignore_errors=True)
    cache_folder.mkdir(parents=True)
    cached = {}
    for split in slices.splits():
        print(f"decoding and caching the {split.name} split", file=sys.stderr)
        started = time.perf_counter()
        make_dataset(split, image_size, 8, cache=str(cache_folder / "cache_"))  # builds the cache before it returns
        cached[split.name] = round(time.perf_counter() - started, 1)
    return {"scan_seconds": round(scanned, 1), "decode_and_cache_seconds": cached,
            "disk_cache_megabytes": _megabytes(cache_folder.iterdir()), "slices": {s.name: len(s) for s in
                                                                                  slices.splits()}}


def training(folder: Path, run_dir: Path, epochs: int, prior_epochs: int) -> dict:
    """The train command on the folder, timed line by line, with its peak memory."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "keras_vqvae.train", "--data", str(folder), "--run-dir", str(run_dir),
               "--epochs", str(epochs), "--pixelcnn-epochs", str(prior_epochs)]
    print(" ".join(command[1:]), file=sys.stderr)
    started = time.perf_counter()
    arrived = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=hardware.REPOSITORY) as process:
        for line in process.stdout:
            print(line, end="", file=sys.stderr)
            for phase, start in MILESTONES.items():
                if phase not in arrived and line.startswith(start):
                    arrived[phase] = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"the train command failed with exit status {process.returncode}")
    wall = time.perf_counter() - started
    vqvae_epochs = _history_seconds(run_dir / "history.csv")
    prior_epochs_seconds = _history_seconds(run_dir / "pixelcnn_history.csv")
    phases = {
        "start_and_scan": arrived["read"],
        # the training split decoded for the pixels' variance, the model built (its epochs are in the history)
        "first_decoding": arrived["vqvae_trained"] - arrived["read"] - sum(vqvae_epochs),
        "vqvae_evaluation_and_pictures": arrived["encoding"] - arrived["vqvae_trained"],
        "encoding_splits": arrived["prior_trained"] - arrived["encoding"] - sum(prior_epochs_seconds),  # and set-up
        "evaluation_sampling_and_scoring": arrived["judge"] - arrived["prior_trained"],
        "judge": arrived["judging"] - arrived["judge"],
        "anatomy_pictures_and_export": arrived["exported"] - arrived["judging"],
    }
    return {"command": " ".join(["python", *command[1:]]).replace(str(folder), "FOLDER").replace(str(run_dir), "RUN"),
            "wall_seconds": round(wall, 1), "peak_memory_megabytes": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "phase_seconds": {name: round(value, 1) for name, value in phases.items()},
            "vqvae_epoch_seconds": vqvae_epochs, "pixelcnn_epoch_seconds": prior_epochs_seconds,
            "metrics": json.loads((run_dir / "metrics.json").read_text())}


def estimate(run: dict, config: TrainConfig) -> dict:
    """Minutes of the whole default run on this folder: every part measured once, the epochs as many times as the
    defaults train them (an epoch's seconds include its validation; the first VQ-VAE epoch, which also decodes the
    validation split, counts once)."""
    vqvae = run["vqvae_epoch_seconds"]
    later_vqvae = vqvae[1:] or vqvae
    phases = run["phase_seconds"]
    parts = {
        "start_scan_and_decoding": phases["start_and_scan"] + phases["first_decoding"],
        "vqvae": vqvae[0] + (config.epochs - 1) * sum(later_vqvae) / len(later_vqvae)
                 + phases["vqvae_evaluation_and_pictures"],
        "encoding_splits": phases["encoding_splits"],
        "pixelcnn": config.pixelcnn.epochs * sum(run["pixelcnn_epoch_seconds"]) / len(run["pixelcnn_epoch_seconds"]),
        "evaluation_sampling_and_scoring": phases["evaluation_sampling_and_scoring"],
        "judge": phases["judge"],
        "anatomy_pictures_and_export": phases["anatomy_pictures_and_export"],
    }
    return {"epochs": config.epochs, "pixelcnn_epochs": config.pixelcnn.epochs,
            "minutes": round(sum(parts.values()) / 60, 1),
            "part_minutes": {name: round(seconds / 60, 1) for name, seconds in parts.items()}}


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/oasis_rehearsal.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True,
                        help="where the OASIS-sized folder is written (once; reused when it holds one) and the run "
                             "and the disk cache go (FOLDER_run, FOLDER_cache)")
    parser.add_argument("--epochs", type=int, default=1, help="VQ-VAE epochs of the rehearsal run (default: 1)")
    parser.add_argument("--pixelcnn-epochs", type=int, default=1, help="its PixelCNN epochs (default: 1)")
    arguments = parser.parse_args(argv)
    folder = arguments.folder.expanduser()
    started = time.perf_counter()
    if not (folder / "keras_png_slices_test").is_dir():
        print(f"writing {OASIS_SUBJECTS} virtual subjects to {folder}", file=sys.stderr)
        write_sample(folder, OASIS_SUBJECTS)
        made = round(time.perf_counter() - started, 1)
    else:
        made = None  # written by an earlier rehearsal
    config = TrainConfig()
    data = {"subjects": list(map(int, (OASIS_SUBJECTS.train, OASIS_SUBJECTS.validate, OASIS_SUBJECTS.test))),
            "making_seconds": made, "folder_megabytes": _megabytes(folder.rglob("*"))}
    cache = folder.with_name(folder.name + "_cache")
    data.update(reading(folder, cache, config.image_size))
    shutil.rmtree(cache)
    run = training(folder, folder.with_name(folder.name + "_run"), arguments.epochs, arguments.pixelcnn_epochs)
    print(json.dumps({"benchmark": "oasis_rehearsal", "data": data, "run": run,
                      "estimated_default_run": estimate(run, config), "hardware": hardware.describe()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
