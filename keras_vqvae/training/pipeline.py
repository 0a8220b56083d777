"""A training run: the VQ-VAE stage, then the prior stage over its codes, into a run folder; the same call resumes.

`train(config)` checks the settings, the run folder and the data before it writes anything, then trains (or
resumes) each stage with a checkpoint after every epoch, evaluates it, draws its pictures, and generates and scores
new slices (see `keras_vqvae.training.run_folder` for what the folder holds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

from keras_vqvae.anomaly import AnomalySettings, calibrate_threshold, detection_problem
from keras_vqvae.batching import apply_in_batches
from keras_vqvae.data import (SliceSet, SubjectSplit, extra_synthetic_slices, load_slices, make_code_dataset,
                              make_dataset, pixel_variance)
from keras_vqvae.errors import InputError, folder_to_write
from keras_vqvae.metrics.anatomy import SlicePositionNetwork, anatomy_metrics, train_position_network
from keras_vqvae.metrics.generation import collapse_warning, generation_metrics, spread
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PRIOR_KINDS, PriorContext, PriorKind
from keras_vqvae.priors.generation import generate
from keras_vqvae.priors.sampler import sample_labels
from keras_vqvae.training import plots
from keras_vqvae.training.builders import build_prior, build_vqvae
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.distribute import make_strategy, precision
from keras_vqvae.settings import flag, shown
from keras_vqvae.training.fitting import Diverged, fit_resumably
from keras_vqvae.training.run_folder import VQVAE_STAGE, RunFolder

STAGES = ("vqvae", "prior", "all")
ENCODING_BATCH_SIZE = 64


def train(config: TrainConfig, stage: str = "all", verbose: int | str = "auto") -> dict:
    """Trains (or resumes) the stages of the run `config` describes: 'vqvae', 'prior' (needs a trained VQ-VAE in
    the run folder) or 'all', the prior being `config.prior`. Returns the metrics also written to metrics.json:
    a section per stage ('vqvae', and the prior's name); a prior's holds its generation metrics.

    Nothing is written to the run folder until the settings, the folder and the data have passed their checks, so
    that a failed start leaves nothing in the way of the next. A stage whose loss becomes nan or infinite stops at
    once with an InputError saying which epoch, what is kept and what to do."""
    run, config = _checked_run(config, stage)
    strategy = make_strategy(config.strategy)  # before the data: a missing TPU or TF_CONFIG is reported at once
    slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    print(slices.summary())
    for note in slices.notes:
        print(f"note: {note}")
    if config.condition == "slice" and not slices.carry_positions:
        raise InputError("--condition slice needs slice numbers in the file names (like case_001_slice_0.png), and "
                         "some names carry none: rename the files, or use --condition none")
    images = {split.name: make_dataset(split, config.image_size, config.batch_size, cache=config.cache)
              for split in slices.splits()}
    train_data = make_dataset(slices.train, config.image_size, config.batch_size, training=True, seed=config.seed,
                              cache=config.cache)
    fresh = stage != "prior" and run.checkpoints(VQVAE_STAGE).recorded() is None
    data_variance = pixel_variance(train_data) if fresh else None  # blank slices stop here
    results = {**run.read_metrics(), "data": slices.summary(), "notes": list(slices.notes)}
    run.write_config(config)  # the first write: everything above has been checked

    with precision(config.mixed_precision), strategy.scope():  # models are built and loaded inside
        if stage == "prior":
            vqvae = run.load_model(VQVAE_STAGE)
        else:
            with _reporting_divergence(config, run, VQVAE_STAGE):
                vqvae, results[VQVAE_STAGE] = _train_vqvae(config, run, slices, images, train_data, data_variance,
                                                           verbose)
            run.write_metrics(results)
        if stage != "vqvae":
            kind = PRIOR_KINDS[config.prior]
            real = {name: _images(dataset) for name, dataset in images.items()}  # decoded once for every score
            with _reporting_divergence(config, run, kind.name):
                results[kind.name], (generated, labels) = _train_prior(config, run, kind, slices, real, vqvae,
                                                                       verbose)
            run.write_metrics(results)
    if stage != "vqvae":
        # The judge, trained when it is first needed, outside the strategy: a metric's network, on one device, in
        # float32, whatever the run's strategy.
        position_network = _position_network(config, run, slices, real["train"], verbose)
        if position_network is not None:
            results[kind.name]["generation"].update(_score_anatomy(config, run, kind, slices, images, real, vqvae,
                                                                   position_network, generated, labels, verbose))
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
        checkpoints, epochs = run.checkpoints(kind.name), config.prior_settings(kind).epochs
        resumed = not checkpoints.changes(_prior_tag(config, kind, config.epochs))
        if resumed and checkpoints.epochs() > epochs:
            raise InputError(_fewer_epochs(run, f"{kind.name} prior", checkpoints.epochs(), flag("epochs", kind.name),
                                           epochs))
    return run, config


def _fewer_epochs(run: RunFolder, model: str, trained: int, epochs_flag: str, epochs: int) -> str:
    return (f"{run.path} holds a {model} trained for {trained} epochs, more than {epochs_flag} {epochs}: give "
            f"{epochs_flag} {trained} to use it as it is, or more to train it further")


def _prior_tag(config: TrainConfig, kind: PriorKind, vqvae_epochs: int) -> dict:
    """What a prior of `kind` is trained from and with: changing any of it trains the prior afresh."""
    return {"vqvae_epochs": vqvae_epochs, **config.prior_tag(kind)}


@contextlib.contextmanager
def _reporting_divergence(config: TrainConfig, run: RunFolder, stage: str):
    """Turns the `Diverged` of stage 'vqvae' or of a prior into the one-line InputError: what happened, what is
    kept, what to do."""
    try:
        yield
    except Diverged as diverged:
        model = "the VQ-VAE" if stage == VQVAE_STAGE else f"the {stage} prior"
        name = "learning_rate" if stage == VQVAE_STAGE else f"{stage}_learning_rate"
        lower = (f"a lower {flag(name)} (now {shown(getattr(config, name))})" if hasattr(config, name)
                 else "a lower learning rate")
        happened = f"training {model} diverged: its {diverged}"
        if diverged.epoch == 1:
            raise InputError(f"{happened}, before any epoch was kept: run again with {lower}") from None
        instead = (f"or train with {lower} in a new --run-dir" if stage == VQVAE_STAGE
                   else f"or give {lower} to train the prior again from the start")
        raise InputError(f"{happened}; its checkpoint after epoch {diverged.epoch - 1} is kept in "
                         f"{run.checkpoints(stage).path} and the same command resumes from it, {instead}") from None


def _train_vqvae(config: TrainConfig, run: RunFolder, slices, images: dict, train_data, data_variance: float | None,
                 verbose) -> tuple[VQVAE, dict]:
    """Trains (or resumes) the VQ-VAE on `train_data`; `data_variance` (that of its pixels) is needed only to build
    a new one."""
    steps_per_epoch = math.ceil(len(slices.train) / config.batch_size)

    def build():
        keras.utils.set_random_seed(config.seed)
        return build_vqvae(config, data_variance, steps_per_epoch)

    model, history = fit_resumably(build, run.checkpoints(VQVAE_STAGE), config.epochs, train_data,
                                   images["validate"], run.logs(VQVAE_STAGE), verbose, jit_compile=config.jit_compile)
    run.save_model(VQVAE_STAGE, model)
    run.write_history(VQVAE_STAGE, history)
    results = {**_timing(history, len(slices.train), "images"),
               **_evaluate(model, {split: images[split] for split in ("validate", "test")}, verbose)}
    test_images = _images(images["test"])  # (N, H, W, 1) in [0, 1]
    reconstructions = apply_in_batches(model.reconstruct, images["test"]) + 0.5
    plots.plot_vqvae_run(history, test_images, reconstructions, encode_images(model, images["test"], verbose=0),
                         model.quantizer.num_embeddings, results["test"], run.plots)
    return model, results


def encode_images(vqvae: VQVAE, dataset, verbose: int = 1) -> np.ndarray:
    """Code maps (N, h, w) int32 of every batch of images in `dataset`; progress as keras.utils.Progbar's `verbose`
    (0 silent, 1 a bar, 2 a line at the end)."""
    return apply_in_batches(vqvae.encode, dataset, verbose)


def _images(dataset) -> np.ndarray:
    """Every image of a dataset of batches in [-0.5, 0.5], as (N, H, W, 1) in [0, 1]."""
    return np.concatenate([batch.numpy() for batch in dataset]) + 0.5


def _timing(history: list[dict[str, float]], examples_per_epoch: int, unit: str) -> dict:
    train_seconds = sum(row["train_seconds"] for row in history)
    return {"epochs": len(history), "seconds": round(sum(row["seconds"] for row in history), 1),  # with validation
            "train_seconds": round(train_seconds, 1),
            f"train_{unit}_per_second": round(len(history) * examples_per_epoch / train_seconds, 1)}


def _evaluate(model: keras.Model, splits: dict, verbose) -> dict[str, dict[str, float]]:
    """model.evaluate on each named dataset of `splits`, each announced and with a progress bar unless verbose is 0."""
    results = {}
    for split, dataset in splits.items():
        if verbose:
            print(f"evaluating {model.name} on the {split} split")
        results[split] = model.evaluate(dataset, return_dict=True, verbose=_progress(verbose))
    return results


def _progress(verbose) -> int:
    """Progbar's verbosity for fit's: 'auto' and 1 show a bar, 2 a line at the end, 0 nothing."""
    return 1 if verbose == "auto" else int(verbose)


def _code_maps(config: TrainConfig, run: RunFolder, slices, vqvae: VQVAE, vqvae_epochs: int,
               verbose) -> dict[str, np.ndarray]:
    """Each split's code maps, from the run folder when this VQ-VAE made them, else encoded now and kept there."""
    codes = run.read_codes(vqvae_epochs)
    if codes is not None:
        return codes
    if verbose:
        print(f"encoding every split into code maps with the VQ-VAE (kept in {run.path / run.CODES_FILE})")
    codes = {split.name: encode_images(vqvae, make_dataset(split, config.image_size, ENCODING_BATCH_SIZE,
                                                           cache="none"),  # one pass: nothing to keep
                                       verbose=_progress(verbose))
             for split in slices.splits()}
    run.write_codes(codes, vqvae_epochs)
    return codes


def _train_prior(config: TrainConfig, run: RunFolder, kind: PriorKind, slices, real: dict, vqvae: VQVAE,
                 verbose) -> tuple[dict, tuple[np.ndarray, np.ndarray | None]]:
    """Trains (or resumes) the prior of `kind` on the VQ-VAE's code maps, then generates new slices and scores them
    against the real ones, `real` (each split's slices, decoded, in [0, 1]), in all but their anatomy (see
    `_score_anatomy`). Returns the results, and the generated slices (n, S, S, 1) in [0, 1] with the slice positions
    (n,) they were drawn for (None for an unconditional prior)."""
    vqvae_epochs = run.checkpoints(VQVAE_STAGE).epochs()
    codes = _code_maps(config, run, slices, vqvae, vqvae_epochs, verbose)
    settings = config.prior_settings(kind)
    automatic = (config.condition == "auto" and slices.carry_positions
                 and config.strategy != "multi-worker")  # see TrainConfig
    conditional = kind.conditional and (config.condition == "slice" or automatic)
    labels = {s.name: np.array(s.slice_numbers) if conditional else None for s in slices.splits()}
    batch_size = min(settings.batch_size, len(codes["train"])) if kind.drop_remainder else settings.batch_size
    test_images = real["test"]
    context = PriorContext(
        vqvae=vqvae, grid_shape=codes["train"].shape[1:], seed=config.seed, real_images=test_images,
        num_classes=slices.num_positions if conditional else 0,
        steps_per_epoch=math.ceil(len(codes["train"]) / batch_size))

    def dataset(split, training=False):
        return make_code_dataset(codes[split], batch_size, labels=labels[split], training=training, seed=config.seed,
                                 drop_remainder=training and kind.drop_remainder)

    def build():
        keras.utils.set_random_seed(config.seed)
        return build_prior(config, kind, context)

    model, history = fit_resumably(build, run.checkpoints(kind.name), settings.epochs, dataset("train", True),
                                   dataset("validate"), run.logs(kind.name), verbose,
                                   callbacks=kind.callbacks(context),
                                   tag=_prior_tag(config, kind, vqvae_epochs),
                                   jit_compile=config.jit_compile)
    run.save_model(kind.name, model)
    run.write_history(kind.name, history)
    results = {**_timing(history, len(codes["train"]), "maps"),
               **_evaluate(model, {split: dataset(split) for split in ("validate", "test")}, verbose)}
    if detection_problem(kind) is None:
        calibration = calibrate_threshold(model, codes["validate"], labels["validate"], AnomalySettings().percentile)
        run.write_anomaly_calibration(kind.name, calibration)
        results["anomaly_threshold"] = calibration["threshold"]

    started = time.perf_counter()
    generated, _ = generate(vqvae, model, config.num_generated, seed=config.seed, temperature=config.temperature,
                            batch_size=ENCODING_BATCH_SIZE, verbose=_progress(verbose))
    sampling_seconds = time.perf_counter() - started
    if verbose:
        print(f"comparing {len(generated)} generated slices with the test and training slices")
    train_images = real["train"]
    shown = spread(len(generated), min(64, len(generated)))  # over the positions
    results["generation"] = {**generation_metrics(generated[shown], test_images, train_images, seed=config.seed),
                             "temperature": config.temperature, "sampling_seconds": round(sampling_seconds, 1)}
    warning = collapse_warning(results["generation"])
    if warning:
        print(f"warning: {warning}")
    plots.plot_prior_run(kind.name, kind.fit_summary(results["test"]), history, generated[shown],
                         results["generation"], run.plots)
    labels = sample_labels(len(generated), context.num_classes).numpy() if context.num_classes else None
    return results, (generated, labels)


def anomaly_calibration(run: RunFolder, prior_name: str, prior: keras.Model, vqvae: VQVAE, percentile: float,
                        verbose: int | str = "auto") -> dict:
    """The anomaly calibration of the run's prior `prior_name` at `percentile` (see
    `keras_vqvae.anomaly.calibrate_threshold`): the one `train` kept in PRIOR_anomaly.json when it is of that
    percentile, else calibrated now on the validation slices' code maps, with their positions when the prior is
    conditioned on them, and kept there."""
    calibration = run.read_anomaly_calibration(prior_name)
    if calibration is not None and calibration["percentile"] == percentile:
        return calibration
    config = run.read_config()
    if verbose:
        print(f"calibrating the anomaly threshold on the run's validation slices (kept in "
              f"{run.anomaly_path(prior_name)})")
    slices = load_slices(config.data, seed=config.seed, synthetic_subjects=SubjectSplit(*config.synthetic_subjects))
    codes = _code_maps(config, run, slices, vqvae, run.checkpoints(VQVAE_STAGE).epochs(), verbose)["validate"]
    positions = np.array(slices.validate.slice_numbers) if prior.num_classes else None
    calibration = calibrate_threshold(prior, codes, positions, percentile)
    run.write_anomaly_calibration(prior_name, calibration)
    return calibration


def _position_network(config: TrainConfig, run: RunFolder, slices, train_images: np.ndarray,
                      verbose) -> SlicePositionNetwork | None:
    """The run's slice-position network (see `keras_vqvae.metrics.anatomy`): kept in the run folder, else trained on
    the training slices (`train_images`, decoded) and kept there. None, with a note, when the file names carry no
    slice positions."""
    if not slices.carry_positions:
        print("note: the file names carry no slice positions, so generated slices are not judged by position")
        return None
    network = run.load_position_network()
    if network is None:
        if verbose and config.data is None and config.judge_subjects:
            print(f"making {config.judge_subjects} further virtual subjects for the slice-position network that "
                  f"judges the generated slices")
        sets = judge_training_sets(config, slices)
        if verbose:
            print(f"training the slice-position network on {' and '.join(f'the {s.name} slices' for s in sets)} "
                  f"({sum(s.num_subjects for s in sets)} subjects; kept in {run.position_network_path})")
        extra = [_images(make_dataset(s, config.image_size, ENCODING_BATCH_SIZE, cache="none")) for s in sets[1:]]
        network = train_position_network(np.concatenate([train_images, *extra]),
                                         np.concatenate([s.slice_numbers for s in sets]), slices.num_positions,
                                         seed=config.seed, verbose=_progress(verbose))
        run.save_model("position_network", network)
    return network


def judge_training_sets(config: TrainConfig, slices) -> list[SliceSet]:
    """The slices the run's slice-position network learns: the training split, and on the embedded data
    `config.judge_subjects` further virtual subjects that are in no split (a network that has seen 48 subjects
    judges too leniently: trained on 192, it put the same generated slices half again as far from real ones)."""
    if config.data is not None or not config.judge_subjects:
        return [slices.train]
    return [slices.train, extra_synthetic_slices(SubjectSplit(*config.synthetic_subjects), config.judge_subjects,
                                                 config.seed)]


def _score_anatomy(config: TrainConfig, run: RunFolder, kind: PriorKind, slices, images: dict, real: dict,
                   vqvae: VQVAE, network: SlicePositionNetwork, generated: np.ndarray, labels: np.ndarray | None,
                   verbose) -> dict:
    """The anatomy metrics of the generated slices (see `keras_vqvae.metrics.anatomy`), with their pictures:
    PRIOR_positions.png (predicted positions) and PRIOR_by_position.png (real beside generated slices of 8
    positions; a conditional prior's by the position asked for, another's by the position predicted)."""
    positions = {split.name: np.array(split.slice_numbers) for split in slices.splits()}
    num_positions = network.num_positions
    if verbose:
        print("judging the generated slices' anatomy against the validation and test slices")
    test_images = real["test"]
    reconstructions = apply_in_batches(vqvae.reconstruct, images["validate"]) + 0.5
    metrics, predicted = anatomy_metrics(network, generated, test_images, real["validate"], reconstructions,
                                         real["train"], seed=config.seed)
    plots.plot_positions(predicted["generated"], predicted["test"], num_positions,
                         run.plots / f"{kind.name}_positions.png",
                         f"{kind.name}: predicted positions, entropy {metrics['position_entropy_bits']:.2f} bits "
                         f"(real {metrics['real_position_entropy_bits']:.2f}); confidence "
                         f"{metrics['position_confidence']:.2f} (real {metrics['real_position_confidence']:.2f}, "
                         f"reconstructions {metrics['reconstructed_position_confidence']:.2f})")
    by_position = labels if labels is not None else predicted["generated"]
    rows = np.linspace(0, num_positions - 1, 8).round().astype(int)
    real_of_row = [np.flatnonzero(positions["test"] == row) for row in rows]  # a split may lack a position
    plots.plot_by_position(
        [test_images[found[0]] if len(found) else None for found in real_of_row],
        [generated[np.flatnonzero(by_position == row)[:6]] for row in rows], rows,
        run.plots / f"{kind.name}_by_position.png",
        f"{kind.name}: a real test slice, then generated slices of its position "
        f"({'asked for' if labels is not None else 'as the position network sees them'}); FD "
        f"{metrics['fd']:.2f}, {metrics['fd_ratio_to_reconstructed']:.2f}x that of reconstructions")
    return metrics
