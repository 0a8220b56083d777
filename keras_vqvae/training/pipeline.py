"""A training run: the VQ-VAE stage, then the prior stage over its codes, into a run folder; the same call resumes.

`train(config)` checks the settings, the run folder and the data before it writes anything, then runs each stage
(`keras_vqvae.training.stages`: build or resume, fit with a checkpoint after every epoch, evaluate, write), and
scores the prior's new slices (`keras_vqvae.training.scoring`). `keras_vqvae.training.run_folder` says what the
folder holds.
"""

from __future__ import annotations

import contextlib
import dataclasses

from keras_vqvae.data import pixel_variance
from keras_vqvae.errors import InputError, folder_to_write
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.settings import flag, shown
from keras_vqvae.training import scoring
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.distribute import make_strategy, precision
from keras_vqvae.training.fitting import Diverged
from keras_vqvae.training.run_folder import VQVAE_STAGE, RunFolder
from keras_vqvae.training.splits import RunSplits
from keras_vqvae.training.stages import PriorStage, VQVAEStage, prior_tag

STAGES = ("vqvae", "prior", "all")


def train(config: TrainConfig, stage: str = "all", verbose: int | str = "auto") -> dict:
    """Trains (or resumes) the stages of the run `config` describes.

    Nothing is written to the run folder until the settings, the folder and the data have passed their checks, so
    that a failed start leaves nothing in the way of the next. A stage whose loss becomes nan or infinite stops at
    once with an InputError saying which epoch, what is kept and what to do.

    Args:
        config: the run: its folder, data and every model's settings.
        stage: 'vqvae', 'prior' (the prior `config.prior` over the codes of the VQ-VAE the run folder holds) or
            'all' (both).
        verbose: fit's verbosity: 'auto' or 1 progress bars and stage messages, 2 a line per epoch, 0 only notes,
            warnings and errors.

    Returns:
        The metrics also written to RUN_DIR/metrics.json: 'data' and 'notes', then a section per stage trained
        ('vqvae', and the prior's name), each with its timing and its 'validate' and 'test' metrics; a prior's
        also holds its 'generation' metrics (`keras_vqvae.training.scoring`).
    """
    run, config = _checked_run(config, stage)
    strategy = make_strategy(config.strategy)  # before the data: a missing TPU or TF_CONFIG is reported at once
    splits = RunSplits.load(config)
    vqvae_stage = VQVAEStage(config, run, splits, verbose)
    data_variance = (pixel_variance(vqvae_stage.training_batches) if stage != "prior" and vqvae_stage.fresh
                     else None)  # blank slices stop here
    results = {**run.read_metrics(), "data": splits.slices.summary(), "notes": list(splits.slices.notes)}
    run.write_config(config)  # the first write: everything above has been checked

    with precision(config.mixed_precision), strategy.scope():  # models are built and loaded inside
        if stage == "prior":
            vqvae = run.load_model(VQVAE_STAGE)
        else:
            with _reporting_divergence(config, run, VQVAE_STAGE):
                vqvae, results[VQVAE_STAGE] = vqvae_stage(data_variance)
            run.write_metrics(results)
        if stage == "vqvae":
            return results
        kind = PRIOR_KINDS[config.prior]
        with _reporting_divergence(config, run, kind.name):
            results[kind.name], generation = PriorStage(config, run, kind, splits, vqvae, verbose)()
    prior_results = results[kind.name]
    prior_results["generation"] = {**scoring.score_generation(splits, generation, config.seed, verbose),
                                   **prior_results["generation"]}  # the figures first, then how they were drawn
    scoring.plot_samples(kind, run, generation, prior_results["test"], prior_results["generation"])
    run.write_metrics(results)
    # The judge, trained when it is first needed, outside the strategy: a metric's network, on one device, in
    # float32, whatever the run's strategy.
    network = scoring.position_network(config, run, splits, verbose)
    if network is not None:
        prior_results["generation"].update(scoring.score_anatomy(kind, run, splits, vqvae, network, generation,
                                                                 config.seed, verbose))
        run.write_metrics(results)
    return results


def _checked_run(config: TrainConfig, stage: str) -> tuple[RunFolder, TrainConfig]:
    """The run folder, once it can take this call's stages, and the configuration to record in it (for the stages
    not trained, what they were trained with). Raises InputError otherwise; reads only."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    run = RunFolder(folder_to_write(config.run_dir, "--run-dir"))
    saved = run.read_config() if run.is_run() and run.has_trained() else None
    if saved is not None:
        config.check_resumable_from(saved)
    elif not run.is_run() and run.path.exists() and any(run.path.iterdir()):
        raise InputError(f"{run.path} exists and is not a keras_vqvae run folder: give a new or empty --run-dir")
    run.check_states()
    vqvae_epochs = run.checkpoints(VQVAE_STAGE).epochs()
    if stage == "prior":
        run.check_model(VQVAE_STAGE)
        config = dataclasses.replace(config, epochs=vqvae_epochs or config.epochs)  # what the VQ-VAE has
    elif vqvae_epochs > config.epochs:
        raise InputError(_fewer_epochs(run, "VQ-VAE", vqvae_epochs, "--epochs", config.epochs))
    if stage == "vqvae" and saved is not None:
        config = dataclasses.replace(config, prior=saved.prior)  # the prior trained last stays the run's
    if stage != "vqvae":
        kind = PRIOR_KINDS[config.prior]
        checkpoints, epochs = run.checkpoints(kind.name), getattr(config, kind.name).epochs
        resumed = not checkpoints.changes(prior_tag(config, kind, config.epochs))
        if resumed and checkpoints.epochs() > epochs:
            raise InputError(_fewer_epochs(run, f"{kind.name} prior", checkpoints.epochs(), flag("epochs", kind.name),
                                           epochs))
    return run, config


def _fewer_epochs(run: RunFolder, model: str, trained: int, epochs_flag: str, epochs: int) -> str:
    return (f"{run.path} holds a {model} trained for {trained} epochs, more than {epochs_flag} {epochs}: give "
            f"{epochs_flag} {trained} to use it as it is, or more to train it further")


@contextlib.contextmanager
def _reporting_divergence(config: TrainConfig, run: RunFolder, stage: str):
    """Turns the `Diverged` of stage 'vqvae' or of a prior into the one-line InputError: what happened, what is
    kept, what to do."""
    try:
        yield
    except Diverged as diverged:
        model = "the VQ-VAE" if stage == VQVAE_STAGE else f"the {stage} prior"
        settings, prefix = (config, "") if stage == VQVAE_STAGE else (getattr(config, stage), stage)
        lower = (f"a lower {flag('learning_rate', prefix)} (now {shown(settings.learning_rate)})"
                 if hasattr(settings, "learning_rate") else "a lower learning rate")
        happened = f"training {model} diverged: its {diverged}"
        if diverged.epoch == 1:
            raise InputError(f"{happened}, before any epoch was kept: run again with {lower}") from None
        instead = (f"or train with {lower} in a new --run-dir" if stage == VQVAE_STAGE
                   else f"or give {lower} to train the prior again from the start")
        raise InputError(f"{happened}; its checkpoint after epoch {diverged.epoch - 1} is kept in "
                         f"{run.checkpoints(stage).path} and the same command resumes from it, {instead}") from None
