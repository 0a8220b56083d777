"""How well anomaly maps find lesions: pixel-level AUPRC, the best achievable Dice, and slice-level AUROC.

The figures the anomaly-segmentation literature reports (e.g. Baur et al. 2021, "Autoencoders for unsupervised
anomaly segmentation in brain MR images: a comparative study"; Pinaya et al. 2022), computed over all pixels of all
slices together:

* AUPRC, the area under the precision-recall curve as average precision: sum_n (R_n - R_{n-1}) P_n over the
  distinct score thresholds, from the highest down (pixels of equal score are taken together);
* best Dice: max over those thresholds of 2 TP / (2 TP + FP + FN), the Dice a threshold chosen knowing the answer
  would reach (an oracle: `dice` measures a mask made at a threshold chosen without the answer);
* slice AUROC: the probability that a slice with a lesion scores above one without (ties count half), by ranks.
"""

from __future__ import annotations

import numpy as np


def _counts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """True and false positives (m,) at each of the m distinct thresholds, from the highest score down, and the
    number of positives."""
    scores, truth = np.asarray(scores, np.float64).ravel(), np.asarray(truth, bool).ravel()
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # where each run of equal scores ends
    true_positives = np.cumsum(truth)[last_of_each]
    false_positives = last_of_each + 1 - true_positives
    return true_positives, false_positives, int(truth.sum())


def auprc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of `scores` (any shape) against the boolean `truth` of the same shape."""
    true_positives, false_positives, positives = _counts(scores, truth)
    if positives == 0:
        raise ValueError("AUPRC needs at least one positive pixel")
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_dice(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(the best Dice over thresholds, the lowest score marked positive at it) of `scores` against `truth`."""
    true_positives, false_positives, positives = _counts(scores, truth)
    if positives == 0:
        raise ValueError("Dice needs at least one positive pixel")
    dice = 2 * true_positives / (true_positives + false_positives + positives)
    best = int(np.argmax(dice))
    thresholds = -np.sort(-np.unique(np.asarray(scores, np.float64)))  # the distinct scores, highest first
    return float(dice[best]), float(thresholds[best])


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice 2 TP / (2 TP + FP + FN) of a boolean mask `predicted` against the boolean `truth` of the same shape (1
    when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    overlap, total = np.logical_and(predicted, truth).sum(), predicted.sum() + truth.sum()
    return float(2 * overlap / total) if total else 1.0


def auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of `scores` (n,) for the boolean `truth` (n,) (Mann-Whitney U / (P N))."""
    scores, truth = np.asarray(scores, np.float64).ravel(), np.asarray(truth, bool).ravel()
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if not positives or not negatives:
        raise ValueError("AUROC needs slices with and without lesions")
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[group]  # 1-based ranks, ties sharing their mean rank
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def detection_metrics(pixel_scores: np.ndarray, pixel_truth: np.ndarray, slice_scores: np.ndarray,
                      slice_truth: np.ndarray) -> dict[str, float]:
    """AUPRC and best Dice of anomaly maps' pixels against the lesion masks' pixels (any matching shapes, e.g.
    (n, H, W) or all slices' pixels in one row), and the slice AUROC of per-slice scores (n,) for the slices that
    have a lesion (n,) bool, when some have one and some not."""
    dice, threshold = best_dice(pixel_scores, pixel_truth)
    metrics = {"auprc": auprc(pixel_scores, pixel_truth), "best_dice": dice, "best_dice_threshold": threshold}
    slice_truth = np.asarray(slice_truth, bool)
    if 0 < slice_truth.sum() < slice_truth.size:
        metrics["slice_auroc"] = auroc(slice_scores, slice_truth)
    return metrics
