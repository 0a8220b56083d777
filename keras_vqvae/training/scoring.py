"""Scoring a prior's generated slices against real ones, with the pictures that show them.

* `score_generation`: how real, new and varied every generated slice is by SSIM and MS-SSIM
  (`keras_vqvae.metrics.generation`), with the sample grid.
* `position_network`: the run's judge, a slice-position network trained on the training slices (and, on the
  embedded data, further virtual subjects in no split), kept in the run folder.
* `score_anatomy`: how anatomical every generated slice is to that judge (`keras_vqvae.metrics.anatomy`), with the
  pictures of predicted positions and of generated slices beside real ones of the same position.
"""

from __future__ import annotations

import numpy as np

from keras_vqvae import plots
from keras_vqvae.data import Slices, SliceSet, SubjectSplit, extra_synthetic_slices
from keras_vqvae.metrics.anatomy import SlicePositionNetwork, anatomy_metrics, train_position_network
from keras_vqvae.metrics.generation import collapse_warning, generation_metrics, spread
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PriorKind
from keras_vqvae.priors.generation import Generation
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.run_folder import RunFolder
from keras_vqvae.training.splits import RunSplits, decoded_images
from keras_vqvae.training.stages import progress, reconstruct_images

SHOWN_SAMPLES = 64  # generated slices in the sample grid, spread over the positions they were drawn for
BY_POSITION_ROWS = 8  # slice positions in the by-position picture
BY_POSITION_SAMPLES = 6  # generated slices beside each of its real ones


def score_generation(splits: RunSplits, generation: Generation, seed: int, verbose) -> dict:
    """`generation_metrics` of every generated slice against the test and training slices; warns when the slices
    look collapsed."""
    if verbose:
        print(f"comparing {len(generation.images)} generated slices with the test and training slices")
    metrics = generation_metrics(generation.images, splits.images("test"), splits.images("train"), seed=seed)
    warning = collapse_warning(metrics)
    if warning:
        print(f"warning: {warning}")
    return metrics


def plot_samples(kind: PriorKind, run: RunFolder, generation: Generation, test_metrics: dict, metrics: dict) -> None:
    """plots/PRIOR_samples.png: SHOWN_SAMPLES of the generated slices, spread over the positions."""
    shown = spread(len(generation.images), min(SHOWN_SAMPLES, len(generation.images)))
    title = (f"{kind.name} (temperature {metrics['temperature']:g}): {kind.fit_summary(test_metrics)}"
             f"best-match SSIM to test {metrics['generated_test_ssim']:.2f}, "
             f"MS-SSIM diversity {metrics['diversity_ms_ssim']:.2f} (real {metrics['real_diversity_ms_ssim']:.2f})")
    plots.plot_grid(generation.images[shown][..., 0], run.plots / f"{kind.name}_samples.png", columns=8, title=title)


def judge_training_sets(config: TrainConfig, slices: Slices) -> list[SliceSet]:
    """The slices the run's slice-position network learns: the training split, and on the embedded data
    `config.judge_subjects` further virtual subjects that are in no split (a network that has seen 48 subjects
    judges too leniently: trained on 192, it put the same generated slices half again as far from real ones)."""
    if config.data is not None or not config.judge_subjects:
        return [slices.train]
    return [slices.train, extra_synthetic_slices(SubjectSplit(*config.synthetic_subjects),
                                                        config.judge_subjects, config.seed)]


def position_network(config: TrainConfig, run: RunFolder, splits: RunSplits, verbose) -> SlicePositionNetwork | None:
    """The run's slice-position network: kept in the run folder, else (none kept, or the kept one damaged, which
    is said) trained on `judge_training_sets` and kept there. None, with a note, when the file names carry no slice
    positions."""
    if not splits.slices.carry_positions:
        print("note: the file names carry no slice positions, so generated slices are not judged by position")
        return None
    network, problem = run.load_position_network()
    if network is not None:
        return network
    if problem:
        print(f"note: {run.position_network_path} is {problem}, so the slice-position network is trained again")
    sets = judge_training_sets(config, splits.slices)
    if verbose and len(sets) > 1:
        print(f"making {config.judge_subjects} further virtual subjects for the slice-position network that "
              f"judges the generated slices")
    if verbose:
        print(f"training the slice-position network on {' and '.join(f'the {s.name} slices' for s in sets)} "
              f"({sum(s.num_subjects for s in sets)} subjects; kept in {run.position_network_path})")
    images = splits.images("train")  # the extra subjects' slices after it, when there are any
    if len(sets) > 1:
        images = np.concatenate([images, *(decoded_images(s, config.image_size) for s in sets[1:])])
    network = train_position_network(images, np.concatenate([s.slice_numbers for s in sets]),
                                     splits.slices.num_positions, epochs=config.judge_epochs, seed=config.seed,
                                     verbose=progress(verbose))
    run.save_model("position_network", network)
    return network


def score_anatomy(kind: PriorKind, run: RunFolder, splits: RunSplits, vqvae: VQVAE, network: SlicePositionNetwork,
                  generation: Generation, seed: int, verbose) -> dict:
    """`anatomy_metrics` of every generated slice, with plots/PRIOR_positions.png (predicted positions) and
    plots/PRIOR_by_position.png (real beside generated slices of 8 positions; a conditional prior's by the position
    it drew them for, another's by the position the network predicts)."""
    if verbose:
        print("judging the generated slices' anatomy against the validation and test slices")
    validate = splits.images("validate")
    metrics, predicted = anatomy_metrics(network, generation.images, splits.images("test"), validate,
                                         reconstruct_images(vqvae, validate), splits.images("train"), seed=seed)
    plots.plot_positions(predicted["generated"], predicted["test"], network.num_positions,
                         run.plots / f"{kind.name}_positions.png",
                         f"{kind.name}: predicted positions, entropy {metrics['position_entropy_bits']:.2f} bits "
                         f"(real {metrics['real_position_entropy_bits']:.2f}); confidence "
                         f"{metrics['position_confidence']:.2f} (real {metrics['real_position_confidence']:.2f}, "
                         f"reconstructions {metrics['reconstructed_position_confidence']:.2f})")
    asked = generation.positions is not None
    _plot_by_position(kind, run, splits, generation.images, generation.positions if asked else predicted["generated"],
                      network.num_positions,
                      f"{kind.name}: a real test slice, then generated slices of its position "
                      f"({'asked for' if asked else 'as the position network sees them'}); FD {metrics['fd']:.2f}, "
                      f"{metrics['fd_ratio_to_reconstructed']:.2f}x that of reconstructions")
    return metrics


def _plot_by_position(kind: PriorKind, run: RunFolder, splits: RunSplits, generated: np.ndarray,
                      positions: np.ndarray, num_positions: int, title: str) -> None:
    """For BY_POSITION_ROWS positions, the first test slice of that position (if the split has one) beside the
    generated slices (n, S, S, 1) of that position, `positions` (n,)."""
    rows = np.linspace(0, num_positions - 1, BY_POSITION_ROWS).round().astype(int)
    test, test_positions = splits.images("test"), splits.positions("test")
    real_of_row = [np.flatnonzero(test_positions == row) for row in rows]  # a split may lack a position
    plots.plot_by_position([test[found[0]] if len(found) else None for found in real_of_row],
                           [generated[np.flatnonzero(positions == row)[:BY_POSITION_SAMPLES]] for row in rows], rows,
                           run.plots / f"{kind.name}_by_position.png", title)
