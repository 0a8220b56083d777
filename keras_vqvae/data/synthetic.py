"""Embedded default data: synthetic "virtual subjects" made from the MNI ICBM152 2009a template.

The OASIS slices cannot be shipped, so the package carries one real, skull-stripped adult brain (the MNI152 average,
see ``resources/NOTICE``) and turns it into many plausible individual brains. Each virtual subject is the template
seen through a random anatomy and a random scanner:

* anatomy: anisotropic scaling, a small rotation and shift, a smooth random deformation at two scales (gross shape and
  gyral detail), and ageing, which widens the ventricles and sulci by letting cerebrospinal fluid (CSF) grow into the
  tissue next to it;
* scanner: grey/white-matter contrast, gamma, a smooth multiplicative bias field, sharpness and noise inside the brain.

Each slice has its tissue labels from the same deformation and ageing (`make_labels`): the tissue that holds the
largest share of each pixel, CSF, grey or white matter, as the OASIS segmentations label theirs.

Slices are laid out exactly like the preprocessed OASIS set: 256x256 8-bit grayscale, 32 axial slices per subject,
anterior up, black background, ``case_<id>_slice_<n>.nii.png``, subject-disjoint train/validate/test folders, and
their labels beside them as OASIS ships its segmentations (``keras_png_slices_seg_<split>/seg_<id>_slice_<n>.nii.png``,
`labels.TISSUE_VALUES`). They are
synthetic and are always announced as such; they never pretend to be OASIS.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from keras_vqvae.data.labels import LABEL_FOLDER_PREFIX, TISSUE_VALUES, label_name
from keras_vqvae.errors import InputError

SLICES_PER_SUBJECT = 32
IMAGE_SIZE = 256
FIELD_OF_VIEW_MM = 256.0  # as in the OASIS slices: 256 pixels of 1 mm
SPLITS = ("train", "validate", "test")
ANNOUNCEMENT = (
    "Synthetic data: virtual subjects made from the MNI ICBM152 2009a template (not OASIS). "
    "Template (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, MNI, McGill University."
)

# Axial band that the 32 slices cover, in template voxels (z, 1 mm): from the top of the cerebellum and the
# temporal lobes to the upper convexity, as in the OASIS slices, where every slice shows a large section of brain.
_Z_FIRST, _Z_LAST = 48.0, 128.0


@dataclasses.dataclass(frozen=True)
class SubjectSplit:
    """How many virtual subjects each split holds; ids are numbered consecutively, train first (as in OASIS)."""

    train: int = 48
    validate: int = 8
    test: int = 8

    @classmethod
    def parse(cls, text: str) -> SubjectSplit:
        """From the command line's "TRAIN,VALIDATE,TEST", e.g. "48,8,8"."""
        parts = text.split(",")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"expected three whole numbers TRAIN,VALIDATE,TEST, got {text!r}")
        return cls(*(int(p) for p in parts))

    def case_ids(self) -> dict[str, list[int]]:
        counts = [self.train, self.validate, self.test]
        if min(counts) < 1:
            raise ValueError(f"every split needs at least one subject, got {dataclasses.asdict(self)}")
        first = np.cumsum([1] + counts[:-1])
        return {split: list(range(start, start + n)) for split, start, n in zip(SPLITS, first, counts)}

    def extra_case_ids(self, count: int) -> list[int]:
        """Ids of `count` further virtual subjects in none of the splits, numbered after the test split's: made the
        same way, they let a judge of generated slices learn more brains than the training split holds without
        seeing a validation or test subject."""
        first = self.train + self.validate + self.test + 1
        return list(range(first, first + count))


@dataclasses.dataclass(frozen=True)
class _Template:
    """Fields sampled together, stacked on the last axis: (x, y, z, field) in RAS voxel order, 1 mm."""

    fields: np.ndarray  # (145, 181, 155, 5) float32: t1, grey matter, white matter, blurred CSF, brain mask
    csf_intensity: float

    T1, GM, WM, CSF_BLURRED, MASK = range(5)


@functools.cache
def _template() -> _Template:
    with resources.files(__package__).joinpath("resources/mni152_2009a_1mm.npz").open("rb") as f:
        volume = np.load(f)
        t1 = volume["t1"].astype(np.float32)
        grey = volume["gm"].astype(np.float32) / 255.0
        white = volume["wm"].astype(np.float32) / 255.0
    mask = (t1 > 0).astype(np.float32)
    csf = mask * np.clip(1.0 - grey - white, 0.0, 1.0)
    csf_blurred = _gaussian_blur(csf, sigma=1.5, axes=(0, 1, 2))
    fields = np.stack([t1, grey, white, csf_blurred, mask], axis=-1)
    return _Template(fields=fields, csf_intensity=float(t1[csf > 0.7].mean()))


def _apply_on_axes(matrix: np.ndarray, array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Applies the linear map `matrix` (n_out, n_in) along each of `axes` of `array`."""
    for axis in axes:
        array = np.moveaxis(np.tensordot(matrix, array, axes=(1, axis)), 0, axis)
    return array


def _gaussian_blur(array: np.ndarray, sigma: float, axes: tuple[int, ...]) -> np.ndarray:
    """Separable Gaussian blur with zero padding, as one dense matrix per axis (the arrays here are small)."""
    for axis in axes:
        offsets = np.arange(array.shape[axis], dtype=np.float32)
        kernel = np.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
        array = _apply_on_axes(kernel / kernel.sum(axis=1, keepdims=True), array, (axis,))
    return array


def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of linear interpolation between two grids that share their end points."""
    positions = np.linspace(0.0, n_in - 1, n_out)
    return np.stack([np.interp(positions, np.arange(n_in), row) for row in np.eye(n_in)], axis=1).astype(np.float32)


def _trilinear(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Samples volume (X, Y, Z, C) at fractional voxel coordinates points (..., 3); zero outside the volume."""
    padded = np.pad(volume, [(1, 1)] * 3 + [(0, 0)])
    flat = padded.reshape(-1, volume.shape[-1])  # (voxels, C)
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    near = np.all((points > -1.0) & (points < np.array(volume.shape[:3])), axis=-1)  # others read only zeros
    coords = points[near].astype(np.float32) + 1.0  # (n, 3), inside the padded volume
    base = coords.astype(np.int64)  # floor, since coords >= 0
    upper = coords - base  # (n, 3) weight of the upper neighbour along each axis
    weights = np.stack([1.0 - upper, upper])  # (2, n, 3)
    index = base @ strides  # (n,)
    values = np.zeros((len(coords), volume.shape[-1]), np.float32)
    for i, j, k in np.ndindex(2, 2, 2):
        weight = weights[i, :, 0] * weights[j, :, 1] * weights[k, :, 2]
        values += weight[:, None] * flat[index + (i * strides[0] + j * strides[1] + k)]
    out = np.zeros(points.shape[:-1] + volume.shape[-1:], np.float32)
    out[near] = values
    return out


def _smooth_field(rng: np.random.Generator, grid: tuple[int, int, int], scale: float, points_unit: np.ndarray,
                  channels: int) -> np.ndarray:
    """Random field, Gaussian with std `scale` on a coarse grid, interpolated at points given in [0, 1]^3."""
    coarse = rng.normal(0.0, scale, size=grid + (channels,)).astype(np.float32)
    return _trilinear(coarse, points_unit * (np.array(grid) - 1))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix from angles in radians about z (in-plane), x and y."""
    cz, sz, cx, sx, cy, sy = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return about_z @ about_x @ about_y


# Subjects kept in memory once made (4 MB each at 256x256, slices and labels): a process that loads the same small
# data set again, as a notebook or the test suite does, takes them from memory instead of making each again (1 to
# 1.5 s apiece on 2 cores).
SUBJECTS_KEPT = 32


def make_subject(case_id: int, seed: int = 0, num_slices: int = SLICES_PER_SUBJECT,
                 image_size: int = IMAGE_SIZE) -> np.ndarray:
    """One virtual subject: `num_slices` axial slices, uint8 (num_slices, image_size, image_size), anterior up.

    The field of view is 256 mm whatever `image_size`, so smaller images are the same slices at lower resolution.

    The same (case_id, seed) always gives the same subject, whatever else is generated; read-only, as it is kept.
    """
    return _subject(case_id, seed, num_slices, image_size)[0]


def make_labels(case_id: int, seed: int = 0, num_slices: int = SLICES_PER_SUBJECT,
                image_size: int = IMAGE_SIZE) -> np.ndarray:
    """The tissue labels of `make_subject`'s slices, uint8 (num_slices, image_size, image_size): 0 background, 1 CSF,
    2 grey matter, 3 white matter (`labels.TISSUES`), each pixel the tissue of the largest share after ageing;
    read-only."""
    return _subject(case_id, seed, num_slices, image_size)[1]


@functools.lru_cache(maxsize=SUBJECTS_KEPT)
def _subject(case_id: int, seed: int, num_slices: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels) of one virtual subject, both uint8 (num_slices, image_size, image_size) and read-only."""
    template = _template()
    rng = np.random.default_rng([seed, case_id])
    shape = np.array(template.fields.shape[:3], np.float32)
    centre = (shape - 1) / 2

    # Output grid in millimetres around the brain's centre: (slice, row, column) -> (x, y, z); row 0 is anterior.
    # The mapping to the template is smooth, so it is computed on a grid 4x coarser and interpolated linearly.
    pixel_mm = FIELD_OF_VIEW_MM / image_size
    last_centre = (FIELD_OF_VIEW_MM - pixel_mm) / 2  # centre of the last pixel
    coarse_size = max(image_size // 4, 2)
    coarse = np.linspace(-last_centre, last_centre, coarse_size, dtype=np.float32)
    z_offset = rng.normal(0.0, 2.0)
    slice_z = np.linspace(_Z_FIRST, _Z_LAST, num_slices, dtype=np.float32) - centre[2] + z_offset
    z, y, x = np.meshgrid(slice_z, coarse[::-1], coarse, indexing="ij")
    out_mm = np.stack([x, y, z], axis=-1)  # (slices, coarse, coarse, 3)

    # Anatomy: inverse affine (output -> template), then a smooth deformation at two scales.
    size_factor = rng.normal(1.0, 0.04)
    scale = size_factor * rng.normal(1.0, 0.03, size=3)
    rotation = _rotation(*np.deg2rad([rng.normal(0, 4.0), rng.normal(0, 3.0), rng.normal(0, 1.5)]))
    shift = rng.normal(0.0, [2.0, 2.0, 0.0])
    template_mm = ((out_mm - shift) @ rotation / scale).astype(np.float32)
    unit = np.clip((template_mm + centre) / (shape - 1), 0.0, 1.0)
    template_mm += _smooth_field(rng, (5, 6, 5), 2.5, unit, 3)
    template_mm += _smooth_field(rng, (13, 16, 13), 0.9, unit, 3)
    bias = np.exp(_smooth_field(rng, (3, 3, 3), 0.07, unit, 1)[..., 0])  # (slices, coarse, coarse)
    upsample = _linear_resize_matrix(coarse_size, image_size)
    template_mm, bias = (_apply_on_axes(upsample, a, (1, 2)) for a in (template_mm, bias))
    sampled = _trilinear(template.fields, template_mm + centre)  # (slices, H, W, 5)

    t1, grey, white, csf_blurred, mask = np.moveaxis(sampled, -1, 0)
    inside = mask > 0.5

    # Ageing: CSF grows into neighbouring tissue, widening ventricles and sulci (age in [0, 1]).
    age = rng.beta(2.0, 2.5)
    csf_level = 0.45 - 0.3 * age
    atrophy = np.clip((csf_blurred - csf_level) / 0.12, 0.0, 1.0) * (csf_blurred > 0.2)
    intensity = t1 + rng.normal(0.0, 10.0) * (white - grey)
    intensity = np.where(atrophy > 0, (1 - atrophy) * intensity + atrophy * template.csf_intensity, intensity)

    # Scanner: gamma, bias field, sharpness, noise; background stays exactly black.
    intensity = 255.0 * (np.clip(intensity, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    intensity *= bias
    detail = intensity - _gaussian_blur(intensity, sigma=1.2 / pixel_mm, axes=(1, 2))
    intensity += rng.uniform(0.4, 1.0) * detail
    intensity *= rng.uniform(0.9, 1.1)
    intensity += rng.normal(0.0, rng.uniform(1.0, 3.0), size=intensity.shape)
    intensity = np.where(inside, intensity, 0.0)
    pixels = np.clip(np.rint(intensity), 0, 255).astype(np.uint8)

    # Labels: the shares of grey and white matter that ageing leaves; the rest of the brain is CSF.
    grey, white = (1 - atrophy) * grey, (1 - atrophy) * white
    shares = np.stack([1 - grey - white, grey, white])  # (3, slices, H, W): CSF, grey, white matter
    labels = np.where(inside, 1 + np.argmax(shares, axis=0), 0).astype(np.uint8)
    for array in (pixels, labels):
        array.flags.writeable = False
    return pixels, labels


def make_split_arrays(split: SubjectSplit = SubjectSplit(), seed: int = 0, image_size: int = IMAGE_SIZE
                      ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All virtual subjects in memory: split -> (images uint8 (N, H, W), case ids (N,), slice numbers (N,))."""
    return {name: subject_arrays(ids, seed, image_size) for name, ids in split.case_ids().items()}


def subject_arrays(case_ids: list[int], seed: int = 0, image_size: int = IMAGE_SIZE
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The virtual subjects `case_ids` in memory: (images uint8 (N, H, W), case ids (N,), slice numbers (N,))."""
    images = np.concatenate([make_subject(case_id, seed, image_size=image_size) for case_id in case_ids])
    return (images, np.repeat(case_ids, SLICES_PER_SUBJECT),
            np.tile(np.arange(SLICES_PER_SUBJECT), len(case_ids)))


def subject_labels(case_ids: list[int], seed: int = 0, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """The tissue labels of `subject_arrays`' images, uint8 (N, H, W) in 0..3 (`labels.TISSUES`), in the same order."""
    return np.concatenate([make_labels(case_id, seed, image_size=image_size) for case_id in case_ids])


def write_sample(root: str | Path, split: SubjectSplit = SubjectSplit(), seed: int = 0) -> int:
    """Writes the virtual subjects to `root` in the OASIS layout, their tissue labels in OASIS's segmentation folders,
    with a README and the template's notice.

    Returns the number of slices written (as many label files beside them). `root` must not already hold slice
    folders (nothing is overwritten).
    """
    root = Path(root).expanduser()
    folders = {name: (root / f"keras_png_slices_{name}", root / f"{LABEL_FOLDER_PREFIX}{name}") for name in SPLITS}
    existing = [str(f) for pair in folders.values() for f in pair if f.exists()]
    if existing:
        raise InputError(f"{existing[0]} already exists: give a new or empty folder (nothing was overwritten)")
    values = np.array(TISSUE_VALUES, np.uint8)
    written = 0
    for name, ids in split.case_ids().items():
        images, segmentations = folders[name]
        images.mkdir(parents=True)
        segmentations.mkdir()
        for case_id in ids:
            for number, (pixels, labels) in enumerate(zip(*_subject(case_id, seed, SLICES_PER_SUBJECT, IMAGE_SIZE))):
                name = f"case_{case_id:03d}_slice_{number}.nii.png"
                Image.fromarray(pixels).save(images / name)
                Image.fromarray(values[labels]).save(segmentations / label_name(name))
                written += 1
    notice = resources.files(__package__).joinpath("resources/NOTICE").read_text()
    (root / "README.txt").write_text(f"{ANNOUNCEMENT}\nMade by `python -m keras_vqvae.data make-sample` with seed "
                                     f"{seed}: {dataclasses.asdict(split)} subjects.\n\n{notice}")
    return written
