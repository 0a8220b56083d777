"""The anomaly threshold: the per-code NLL above which the anomaly maps redraw a code, calibrated on healthy slices.

A prior trained on healthy code maps gives each code of a healthy validation slice an NLL, -log2 p(z_p | z_<p, c)
in bits (`code_nll`); the threshold is the `percentile` of those NLLs, so that about (100 - percentile)% of healthy
codes are redrawn (see `keras_vqvae.anomaly`). `train` calibrates it on the run's validation code maps and keeps it
as RUN_DIR/PRIOR_anomaly.json; `run_calibration` reads it back, or calibrates it again from the kept code maps.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.errors import InputError
from keras_vqvae.priors.autoregressive import ANY_POSITION

CALIBRATION_PERCENTILE = 99.8  # codes less likely than 99.8% of healthy validation codes are redrawn
SHOWN_PERCENTILES = (50.0, 90.0, 98.0, 99.0, 99.5, 99.8, 99.9)  # kept beside the threshold, for reference


def prior_labels(prior: keras.Model, positions, count):
    """The prior's class labels (count,) int32 of slice positions (count,) (ANY_POSITION: the null class), or None
    for an unconditional prior. None for positions means any position."""
    classes = prior.num_classes
    if not classes:
        return None
    positions = tf.fill([count], ANY_POSITION) if positions is None else tf.cast(positions, tf.int32)
    return tf.where(positions == ANY_POSITION, classes, positions)


def check_positions(prior: keras.Model, positions: np.ndarray | None) -> None:
    """An InputError when a conditional prior cannot take these slice positions: one out of range, or any position
    (ANY_POSITION, or None) from a prior trained without a null class."""
    classes = prior.num_classes
    if not classes:
        return
    any_position = positions is None or np.any(np.asarray(positions) == ANY_POSITION)
    if any_position and not prior.has_null_class:
        raise InputError("this prior is conditioned on slice positions and has no class for 'any position': give "
                         "every slice's position (file names like case_001_slice_12.png)")
    if positions is not None:
        positions = np.asarray(positions)
        wrong = positions[(positions != ANY_POSITION) & ((positions < 0) | (positions >= classes))]
        if wrong.size:
            raise InputError(f"slice position {int(wrong[0])} is out of range: this prior knows positions 0 to "
                             f"{classes - 1} (or {ANY_POSITION} for any position)")


def calibrate_threshold(prior: keras.Model, codes: np.ndarray, positions: np.ndarray | None,
                        percentile: float = CALIBRATION_PERCENTILE, batch_size: int = 64) -> dict:
    """The anomaly threshold of a prior, from healthy code maps.

    Args:
        prior: a prior that scores codes (`code_nll`).
        codes: healthy code maps (n, h, w) int.
        positions: their slice positions (n,) for a conditional prior; None for any position.
        percentile: the share of healthy codes, in percent, whose NLL does not exceed the threshold.
        batch_size: maps scored at once (a matter of speed and memory only).

    Returns:
        {'threshold': bits, 'percentile', 'codes': how many were scored, 'nll_mean': bits, 'nll_percentiles':
        {'50': bits, ...} at SHOWN_PERCENTILES}.
    """
    nll = []
    for start in range(0, len(codes), batch_size):
        batch = codes[start:start + batch_size]
        labels = prior_labels(prior, None if positions is None else positions[start:start + batch_size], len(batch))
        nll.append(keras.ops.convert_to_numpy(prior.code_nll(batch, labels)).ravel())
    nll = np.concatenate(nll)
    return {"threshold": float(np.percentile(nll, percentile)), "percentile": percentile, "codes": int(nll.size),
            "nll_mean": float(nll.mean()),
            "nll_percentiles": {f"{p:g}": float(np.percentile(nll, p)) for p in SHOWN_PERCENTILES}}


def run_calibration(run, prior_name: str, prior: keras.Model, percentile: float = CALIBRATION_PERCENTILE,
                    verbose: int | str = "auto") -> dict:
    """The anomaly calibration of the prior `prior_name` of `run` (a `keras_vqvae.training.RunFolder`) at
    `percentile`: the one `train` kept in
    RUN_DIR/PRIOR_anomaly.json when it is of that percentile, else calibrated now on the validation code maps the
    run keeps (RUN_DIR/codes.npz, with their slice positions for a conditional prior), and kept only when the run has
    none (a calibration at another percentile never replaces the run's: it takes seconds to make again). A damaged
    calibration is said, in one line, and calibrated again; without usable code maps, an InputError says how to make
    them. The run's data is never read, so a run whose data has moved still calibrates."""
    calibration, problem = run.read_anomaly_calibration(prior_name)
    if calibration is not None and calibration["percentile"] == percentile:
        return calibration
    keep = calibration is None
    if problem:
        print(f"note: {run.anomaly_path(prior_name)} is {problem}, so the threshold is calibrated again on the "
              f"run's validation code maps")
    kept = run.read_codes(run.vqvae_epochs())
    conditional = bool(prior.num_classes)
    if kept is None or (conditional and "validate" not in kept.positions):  # older code maps lack the positions
        raise InputError(f"the run's code maps ({run.codes_path}) are missing, damaged, from an older VQ-VAE or "
                         f"without their slice positions, so the anomaly threshold cannot be calibrated: make them "
                         f"again with python -m keras_vqvae.train --run-dir {run.path} --stage prior --prior "
                         f"{prior_name}")
    if verbose:
        where = f"kept in {run.anomaly_path(prior_name)}" if keep else "the run's own is kept"
        print(f"calibrating the anomaly threshold at percentile {percentile:g} on the run's validation code maps "
              f"({where})")
    positions = kept.positions["validate"] if conditional else None
    made = calibrate_threshold(prior, kept.codes["validate"], positions, percentile)
    if keep:
        run.write_anomaly_calibration(prior_name, made)
    return made
