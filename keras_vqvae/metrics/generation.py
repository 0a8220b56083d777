"""Comparing sets of images: every pair's SSIM / MS-SSIM, and the generation metrics built on them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vqvae.metrics.image import SSIM_FILTER_SIZE, brain_mask

SSIM_SIGMA = 1.5
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, as tf.image.ssim_multiscale
_K1, _K2 = 0.01, 0.03  # tf.image.ssim's constants: C1 = (K1 * max_val)^2, C2 = (K2 * max_val)^2, max_val = 1
_PAIRS_PER_CALL = 256  # products of this many image pairs are filtered at once (about 16 MB each at 128x128)


def _window_matrix(side: int) -> tf.Tensor:
    """(side - 10, side) banded matrix whose rows are tf.image.ssim's 1-D Gaussian window (11 taps, sigma 1.5) at each
    'valid' offset: M @ image @ M'^T filters an image with the 2-D window, the outer product of two 1-D ones."""
    offsets = np.arange(SSIM_FILTER_SIZE) - (SSIM_FILTER_SIZE - 1) / 2
    window = np.exp(-0.5 * np.square(offsets) / SSIM_SIGMA**2)
    matrix = np.zeros((side - SSIM_FILTER_SIZE + 1, side), np.float32)
    for row in range(len(matrix)):
        matrix[row, row:row + SSIM_FILTER_SIZE] = window / window.sum()
    return tf.constant(matrix)


def _gaussian_blur(images, windows):
    """(N, H, W) -> (N, H - 10, W - 10): the 11x11 Gaussian window of tf.image.ssim, 'valid', as two matrix
    products with windows = (_window_matrix(H), _window_matrix(W)); on a CPU much faster than a convolution."""
    rows, columns = windows
    return tf.matmul(tf.matmul(rows[None], images), columns[None], transpose_b=True)


@tf.function(jit_compile=True, reduce_retracing=True)
def _pair_terms(x, mean_x, square_x, weights_x, y, mean_y, square_y, windows):
    """SSIM and mean contrast-structure term cs of every pair (x_a, y_b), each (a, b).

    x (a, H, W) and y (b, H, W) in [0, 1], with their local means and local means of squares (the Gaussian window's,
    computed once per image), and weights_x (a, H - 10, W - 10), each x_a's weights of the SSIM map's positions
    (summing to 1: uniform for the whole image). Only the local mean of x_a * y_b needs computing per pair. As
    tf.image.ssim:
        luminance = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
        cs        = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2),   SSIM = mean(luminance * cs)
    with the mean weighted by weights_x.
    """
    a, b, height, width = tf.shape(x)[0], tf.shape(y)[0], tf.shape(x)[1], tf.shape(x)[2]
    products = tf.reshape(x[:, None] * y[None], (a * b, height, width))
    mean_xy = tf.reshape(_gaussian_blur(products, windows), (a, b, height - 10, width - 10))  # (a, b, h', w')
    mu_x, mu_y = mean_x[:, None], mean_y[None]  # (a, 1, h', w'), (1, b, h', w')
    c1, c2 = _K1**2, _K2**2
    luminance = (2.0 * mu_x * mu_y + c1) / (tf.square(mu_x) + tf.square(mu_y) + c1)
    variances = square_x[:, None] + square_y[None] - tf.square(mu_x) - tf.square(mu_y)
    cs = (2.0 * (mean_xy - mu_x * mu_y) + c2) / (variances + c2)  # (a, b, h', w')
    weights = weights_x[:, None]  # (a, 1, h', w')
    return tf.reduce_sum(luminance * cs * weights, axis=[2, 3]), tf.reduce_sum(cs * weights, axis=[2, 3])


def _pairwise_terms(x, y, region: str = "image"):
    """(SSIM, cs), each (len(x), len(y)) numpy, of every pair of images x (a, H, W, 1), y (b, H, W, 1) in [0, 1],
    averaged over the whole image (`region` 'image') or over the brain of each x_a ('brain', as `brain_ssim`)."""
    x_images = tf.convert_to_tensor(x, tf.float32)
    x, y = x_images[..., 0], tf.convert_to_tensor(y, tf.float32)[..., 0]  # (n, H, W)
    if x.shape[1] < SSIM_FILTER_SIZE or x.shape[2] < SSIM_FILTER_SIZE:
        raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} are smaller than the {SSIM_FILTER_SIZE}x"
                         f"{SSIM_FILTER_SIZE} SSIM window")
    windows = _window_matrix(x.shape[1]), _window_matrix(x.shape[2])
    mean_x, mean_y = _gaussian_blur(x, windows), _gaussian_blur(y, windows)
    square_x, square_y = _gaussian_blur(tf.square(x), windows), _gaussian_blur(tf.square(y), windows)
    border = (SSIM_FILTER_SIZE - 1) // 2
    if region == "brain":
        mask = brain_mask(x_images)[:, border:-border, border:-border, 0]  # (a, h', w')
    else:
        mask = tf.ones_like(mean_x)
    weights_x = tf.math.divide_no_nan(mask, tf.reduce_sum(mask, axis=[1, 2], keepdims=True))  # (a, h', w')
    step_y = min(len(y), _PAIRS_PER_CALL)
    step_x = max(1, _PAIRS_PER_CALL // step_y)
    ssim_rows, cs_rows = [], []
    for i in range(0, len(x), step_x):
        ssim_row, cs_row = [], []
        for j in range(0, len(y), step_y):
            # Every call gets full chunks (the last ones padded), so that XLA compiles once per image size.
            values = _pair_terms(*(_chunk(t, i, step_x) for t in (x, mean_x, square_x, weights_x)),
                                 *(_chunk(t, j, step_y) for t in (y, mean_y, square_y)), windows)
            ssim_row.append(values[0].numpy()[:len(x) - i, :len(y) - j])
            cs_row.append(values[1].numpy()[:len(x) - i, :len(y) - j])
        ssim_rows.append(np.concatenate(ssim_row, axis=1))
        cs_rows.append(np.concatenate(cs_row, axis=1))
    return np.concatenate(ssim_rows), np.concatenate(cs_rows)


def _chunk(images, start, size):
    """images[start:start + size], padded with zeros to `size` images."""
    chunk = images[start:start + size]
    return tf.pad(chunk, [[0, size - len(chunk)], [0, 0], [0, 0]])


def pairwise_ssim(x, y, region: str = "image") -> np.ndarray:
    """SSIM of every pair (x_a, y_b), equal to tf.image.ssim of each pair (max_val 1, 11x11 window), computed with
    one filtering per pair instead of five.

    Args:
        x: images (a, H, W, 1) in [0, 1].
        y: images (b, H, W, 1) in [0, 1].
        region: 'image' averages the SSIM map over the whole image; 'brain' over x_a's brain only, as
            `keras_vqvae.metrics.image.brain_ssim` does.

    Returns:
        (a, b) float32: the SSIM of x_a and y_b at [a, b].
    """
    return _pairwise_terms(x, y, region)[0]


def ms_ssim_scales(side: int) -> int:
    """How many scales of MS-SSIM fit an image side: halvings of even sides that stay at least 11 pixels, at most 5."""
    scales = 1
    while scales < len(MS_SSIM_POWER_FACTORS) and side % 2 == 0 and side // 2 >= SSIM_FILTER_SIZE:
        side //= 2
        scales += 1
    return scales


def pairwise_ms_ssim(x, y) -> np.ndarray:
    """Multi-scale SSIM (Wang et al. 2003) of every pair (x_a, y_b).

    As tf.image.ssim_multiscale with the first S of its power factors, renormalised to sum to 1, where S =
    `ms_ssim_scales(min(H, W))` (4 at 128x128: the fifth scale, 8x8, is smaller than the SSIM window):
        MS-SSIM = prod_{s < S} relu(cs_s)^w_s * relu(SSIM_S)^w_S

    Args:
        x: images (a, H, W, 1) in [0, 1].
        y: images (b, H, W, 1) in [0, 1].

    Returns:
        (a, b) float32: the MS-SSIM of x_a and y_b at [a, b].
    """
    x, y = tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.float32)
    scales = ms_ssim_scales(min(x.shape[1], x.shape[2]))
    weights = np.array(MS_SSIM_POWER_FACTORS[:scales]) / sum(MS_SSIM_POWER_FACTORS[:scales])
    result = np.ones((len(x), len(y)))
    for scale, weight in enumerate(weights):
        ssim_values, cs = _pairwise_terms(x, y)
        last = scale == scales - 1
        result *= np.maximum(ssim_values if last else cs, 0.0) ** weight
        x, y = tf.nn.avg_pool2d(x, 2, 2, "VALID"), tf.nn.avg_pool2d(y, 2, 2, "VALID")
    return result


SSIM_MATCH_THRESHOLD = 0.6
COLLAPSE_FRACTION = 0.5  # collapsed: pairs more alike than real ones by half of what separates those from identical


def generation_metrics(generated, test, train, seed: int = 0) -> dict[str, float]:
    """How real, how new and how varied generated slices are; all images (n, H, W, 1) in [0, 1].

    * `generated_test_ssim`: for each generated slice, its highest SSIM against any test slice (its best match
      among real slices the models never saw), averaged over the generated slices. With `test_matched_above_0_6`,
      the fraction of test slices whose highest SSIM against any generated slice exceeds 0.6, this is the statistic
      earlier OASIS projects reported ("generated slices reach SSIM > 0.6 against the test set").
    * `nearest_train_ssim`: each generated slice's highest SSIM against any training slice, averaged: a
      memorisation check, to read beside `real_nearest_train_ssim`, the same for real test slices. A generator
      that copies its training data scores near 1, well above the real figure.
    * `diversity_ms_ssim`: mean MS-SSIM (`pairwise_ms_ssim`) over all pairs of distinct generated slices; lower is
      more varied. Beside it, `real_diversity_ms_ssim` over as many test slices (drawn with `seed`). Collapsed
      samples score near 1.

    SSIM is whole-image SSIM (tf.image.ssim, max_val 1), as those projects used.

    Args:
        generated: generated slices (n, H, W, 1) in [0, 1]; every one counts.
        test: real slices the models never saw (m, H, W, 1) in [0, 1].
        train: the training slices (k, H, W, 1) in [0, 1].
        seed: the seed that draws n of the test slices for the real figures.

    Returns:
        A dict of the figures above and `generated`, the number of generated slices they count.
    """
    generated, test, train = (np.asarray(images, np.float32) for images in (generated, test, train))
    real = real_sample(test, len(generated), seed)
    to_test = pairwise_ssim(generated, test)  # (generated, test)
    return {
        "generated_test_ssim": float(to_test.max(axis=1).mean()),
        "test_matched_above_0_6": float((to_test.max(axis=0) > SSIM_MATCH_THRESHOLD).mean()),
        "nearest_train_ssim": float(pairwise_ssim(generated, train).max(axis=1).mean()),
        "real_nearest_train_ssim": float(pairwise_ssim(real, train).max(axis=1).mean()),
        "diversity_ms_ssim": diversity_ms_ssim(generated),
        "real_diversity_ms_ssim": diversity_ms_ssim(real),
        "generated": len(generated),
    }


def real_sample(images, count: int, seed: int = 0) -> np.ndarray:
    """`count` of `images` (all of them if fewer), drawn without replacement with `seed`, in their order."""
    count = min(count, len(images))
    return np.asarray(images)[np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))]


def spread(total: int, count: int) -> np.ndarray:
    """`count` indices (count,) spread evenly over 0 .. total - 1, from the first to the last (all of them when
    count == total): a subset of generated slices that covers the positions they were drawn for in order."""
    return np.linspace(0, total - 1, count).round().astype(int)


def diversity_ms_ssim(images) -> float:
    """How alike a set of images is: the mean MS-SSIM over all pairs of distinct images.

    Args:
        images: (n, H, W, 1) in [0, 1], n >= 2.

    Returns:
        The mean, a float: 1 when all are the same, lower for a more varied set.
    """
    similarity = pairwise_ms_ssim(images, images)  # (n, n)
    return float(similarity[~np.eye(len(similarity), dtype=bool)].mean())


def collapse_warning(generation: dict) -> str | None:
    """A warning when generated slices (`diversity_ms_ssim`) are much more alike than real ones
    (`real_diversity_ms_ssim`): past the COLLAPSE_FRACTION of the way from the real figure to 1 (all identical)."""
    generated, real = generation["diversity_ms_ssim"], generation["real_diversity_ms_ssim"]
    limit = real + COLLAPSE_FRACTION * (1.0 - real)
    if generated <= limit:
        return None
    return (f"the generated slices look collapsed: their mean pairwise MS-SSIM is {generated:.2f}, against "
            f"{real:.2f} between real slices (limit {limit:.2f}); the prior makes nearly the same slice again and "
            f"again: train it longer or with a lower learning rate, or try the other prior")
