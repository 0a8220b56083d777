"""The baselines beside the anomaly maps, on hand-made slices: the intensity map finds a bright or a dark spot, the
likelihood map lays each code's NLL over its own pixels, both inside the eroded brain only."""

import numpy as np
import pytest

from keras_vqvae.anomaly import eroded_brain
from keras_vqvae.anomaly_baselines import intensity_maps, nll_maps


def disc_slice(size=32):
    """One slice (1, size, size, 1): a disc of tissue 0.5 on black, a bright spot (0.9) and a dark one (0.2)."""
    rows, columns = np.mgrid[0:size, 0:size]
    image = np.where(np.hypot(rows - size / 2, columns - size / 2) < size * 0.4, 0.5, 0.0).astype(np.float32)
    image[12:15, 10:13] = 0.9
    image[18:21, 19:22] = 0.2
    return image[None, ..., None]


def test_the_intensity_map_is_the_slice_or_its_complement_inside_the_eroded_brain():
    image = disc_slice()
    brain = eroded_brain(image).numpy()[..., 0]
    bright, dark = intensity_maps(image, "bright", 0.0), intensity_maps(image, "dark", 0.0)
    np.testing.assert_allclose(bright, image[..., 0] * brain)
    np.testing.assert_allclose(dark, (1 - image[..., 0]) * brain)
    assert np.all(bright[brain == 0] == 0) and np.all(dark[brain == 0] == 0)  # the black background is no lesion
    assert np.unravel_index(bright[0].argmax(), (32, 32)) in {(r, c) for r in range(12, 15) for c in range(10, 13)}
    assert np.unravel_index(dark[0].argmax(), (32, 32)) in {(r, c) for r in range(18, 21) for c in range(19, 22)}


def test_smoothing_spreads_the_intensity_map_but_keeps_its_peak_on_the_spot():
    smoothed = intensity_maps(disc_slice(), "bright", 1.0)[0]
    assert 12 <= smoothed.argmax() // 32 <= 14 and 10 <= smoothed.argmax() % 32 <= 12
    assert smoothed.max() < 0.9  # the spot shares its brightness with its neighbours


def test_the_likelihood_map_lays_each_codes_nll_over_its_own_pixels_inside_the_brain():
    image = disc_slice()
    brain = eroded_brain(image).numpy()[0, ..., 0]
    nll = np.ones((1, 8, 8), np.float32)
    nll[0, 3, 5] = 9.0  # code (3, 5) decodes to pixels 12-15 x 20-23, all of them brain
    maps = nll_maps(nll, image, 0.0)[0]
    expected = np.ones((32, 32))
    expected[12:16, 20:24] = 9.0
    assert brain[12:16, 20:24].all() and not brain.all()
    np.testing.assert_allclose(maps, expected * brain)


def test_the_baselines_refuse_an_unknown_polarity_and_codes_that_do_not_tile_the_slice():
    with pytest.raises(ValueError, match="polarity"):
        intensity_maps(disc_slice(), "grey", 1.0)
    with pytest.raises(ValueError, match="do not tile"):
        nll_maps(np.ones((1, 5, 5)), disc_slice(), 1.0)
