"""Inference over many batches: one compiled function, a progress bar, the results gathered as one numpy array.

Calling a model's method eagerly batch after batch runs it op by op from Python: on the default VQ-VAE that takes
twice as long as the same method traced once by `tf.function` (`benchmarks/train_throughput.py --overhead`).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

COMPILED_KEPT = 8  # compiled functions kept for reuse (each keeps its model alive)


@functools.lru_cache(maxsize=COMPILED_KEPT)
def compiled(function: Callable) -> Callable:
    """`function` traced by tf.function, the same one for the same function: a bound method (`vqvae.decode`)
    called again, say after every epoch, is not traced again."""
    return tf.function(function, reduce_retracing=True)


def apply_in_batches(function: Callable, batches: Iterable, verbose: int = 0, unit: str = "batch") -> np.ndarray:
    """function(batch) of every batch, traced once (and again only for a new dtype or rank), concatenated along
    the first axis. `verbose` is keras.utils.Progbar's: 0 silent, 1 a bar, 2 a line at the end."""
    batches, traced = list(batches), compiled(function)
    progress = keras.utils.Progbar(len(batches), verbose=verbose, unit_name=unit)
    results = []
    for batch in batches:
        results.append(keras.ops.convert_to_numpy(traced(batch)))
        progress.add(1)
    return np.concatenate(results)


def slices_of(array: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """array in consecutive pieces of at most batch_size along the first axis."""
    return [array[i:i + batch_size] for i in range(0, len(array), batch_size)]
