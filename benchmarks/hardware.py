"""What a benchmark ran on, in one line, for its JSON."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, " + (", ".join(gpus) if gpus else "no GPU")
