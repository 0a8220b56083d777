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


def cpu_model() -> str:
    """The CPU's model name and whether it has AMX (which makes bfloat16 fast) or AVX-512 bfloat16 instructions, from
    /proc/cpuinfo where there is one: 'AMD EPYC, AVX-512 BF16, no AMX', or 'AMD EPYC, no AVX-512, no AMX'."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "CPU model unknown"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    extras = [name for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")) if flag in flags]
    missing = [name for flag, name in (("avx512f", "no AVX-512"), ("amx_bf16", "no AMX")) if flag not in flags]
    return ", ".join([fields.get("model name", "CPU model unknown"), *extras, *missing])


def describe() -> str:
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return (f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPU cores, "
            + (", ".join(gpus) if gpus else "no GPU"))
