"""How a prior plugs in: one `PriorKind` declaration per prior, which the command line, the training pipeline, the
run folder, the plots and the export read.

A new prior is a module that defines its model, its sampler(s) and a `PriorKind`, plus its settings dataclass in
`keras_vqvae.priors.settings`, one entry in `keras_vqvae.priors.PRIOR_KINDS` and one field in
`keras_vqvae.training.config.TrainConfig`, named after the prior.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np

from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors.sampler import Sampler


@dataclasses.dataclass(frozen=True)
class PriorContext:
    """What a prior is trained on and with, beyond its own settings.

    Args:
        vqvae: the trained VQ-VAE whose code maps the prior models.
        grid_shape: (h, w) of the code maps.
        num_classes: class labels (slice positions) to condition on; 0 for none.
        steps_per_epoch: training steps in one epoch, for learning-rate schedules.
        validation_images: the validation slices (n, H, W, 1) in [0, 1], for callbacks that compare samples with
            real slices while the prior trains (never the test split: nothing that steers or watches training may
            see it).
        seed: the run's seed.
    """

    vqvae: VQVAE
    grid_shape: tuple[int, int]
    num_classes: int
    steps_per_epoch: int
    validation_images: np.ndarray
    seed: int


@dataclasses.dataclass(frozen=True)
class PriorKind:
    """A kind of prior over code maps, as the rest of the package sees it.

    Args:
        name: the prior's name: the value of `--prior`, the prefix of its settings' flags (`--NAME-epochs`) and of
            its files in a run folder (`NAME.keras`, `NAME_checkpoints/`, `plots/NAME_samples.png`).
        description: what it is, in a few words, for help texts and messages.
        model_class: the class of its models.
        settings: the dataclass of its settings, in `keras_vqvae.priors.settings` (fields declared with
            `keras_vqvae.settings.option`; `TrainConfig.NAME` holds one); it has at least `epochs` and `batch_size`.
        build: (settings, context) -> the prior, compiled with its optimizer(s).
        samplers: its `Sampler` classes, which draw the same codes (at different speeds).
        default_sampler: the name of the one to use unless another is asked for.
        conditional: whether it can be conditioned on slice positions.
        drop_remainder: whether its training batches must all be full (batch normalisation).
        grid_problem: (h, w) -> why it cannot model code maps of that shape (words that follow "the prior", for an
            error message), or None when it can; checked with the configuration, before any training.
        callbacks: (context) -> Keras callbacks for its training.
        fit_summary: test metrics -> a few words for its sample grid's title ('' for none).
    """

    name: str
    description: str
    model_class: type[keras.Model]
    settings: type
    build: Callable[[object, PriorContext], keras.Model]
    samplers: tuple[type[Sampler], ...]
    default_sampler: str
    conditional: bool = False
    drop_remainder: bool = False
    grid_problem: Callable[[tuple[int, int]], str | None] = lambda grid_shape: None
    callbacks: Callable[[PriorContext], list] = lambda context: []
    fit_summary: Callable[[dict], str] = lambda test_metrics: ""
