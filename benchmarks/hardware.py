"""What a benchmark ran on, in one line, for its JSON; and which keras_vqvae it measures.

Every benchmark imports this module before keras_vqvae, so that it measures the keras_vqvae of the repository it sits
in: run as `python3 benchmarks/NAME.py`, Python would otherwise import whatever copy pip installed last, which may be
older than the checkout (and would then train with its own defaults into the run folder given).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


def describe() -> str:
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, " + (", ".join(gpus) if gpus else "no GPU")
