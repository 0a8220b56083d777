"""Synthetic lesions for measuring anomaly detection: healthy slices with smooth-edged blobs inserted, and their masks.

No lesion data can be downloaded here, so the measurement makes its own. The recipe, for one 8-bit slice:

* the slice gets lesions with probability `lesion_rate` (else it stays as it was, with an empty mask), 1 to 3 of them;
* a lesion's centre is a brain pixel at least MARGIN pixels from the background; its radius r is drawn log-uniformly
  from RADIUS_RANGE pixels (at 256 x 256: from about 10 pixels of area to about 4% of a mid-level brain);
* its outline is an ellipse (axes r * (1 +- 0.25), any orientation) whose radius wobbles with two low harmonics,
  and its edge is soft: the weight w = sigmoid((1 - d / R(theta)) * r / EDGE) falls from 1 inside to 0 outside
  over about EDGE pixels;
* it scales the tissue it sits in: pixel * (1 + w * (contrast - 1)), contrast drawn from the kind's range
  (brighter, as contrast-enhancing tumours or subacute haemorrhage are on T1, or darker, as chronic infarcts,
  multiple-sclerosis "black holes" and tumour cores are), so the tissue's texture and bias field show through, and
  it stays inside the brain (the background stays black);
* the mask is w > 0.5 inside the brain.

The third kind, `pasted`, changes no intensity: each lesion is the same place of another subject's slice 6 to 12
levels away (15 to 30 mm, other anatomy: ventricles, sulci and white matter where the slice has none), scaled so
that its mean under the weight equals the tissue's it replaces, and blended in with the same soft edge,
x (1 - w) + w * ratio * donor. Its radius is drawn from PASTED_RADIUS_RANGE (texture needs room to be seen). Its
mean intensity is the tissue's, so thresholding the intensity cannot find it: only a model of anatomy can.

Everything is drawn from a seed and the slice's case and number, so the same command writes the same files.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from keras_vqvae.data import synthetic
from keras_vqvae.errors import InputError, folder_to_write

RADIUS_RANGE = (2.0, 14.0)  # pixels at 256 x 256
PASTED_RADIUS_RANGE = (5.0, 16.0)  # pixels at 256 x 256, for pasted tissue
DONOR_SHIFT = (6, 12)  # levels between a slice and the slice its pasted tissue comes from
MARGIN = 4  # pixels between a lesion's centre and the background
EDGE = 1.5  # pixels over which a lesion's edge fades
LESIONS_PER_SLICE = (1, 3)


@dataclasses.dataclass(frozen=True)
class LesionKind:
    """A kind of lesion: its name and the range its contrast (lesion / tissue intensity) is drawn from, or None for
    tissue pasted from another slice at the tissue's mean intensity."""

    name: str
    contrast: tuple[float, float] | None
    description: str

    @property
    def pasted(self) -> bool:
        return self.contrast is None

    @property
    def radius_range(self) -> tuple[float, float]:
        return PASTED_RADIUS_RANGE if self.pasted else RADIUS_RANGE


LESION_KINDS = {kind.name: kind for kind in (
    LesionKind("bright", (1.4, 1.8), "brighter than the tissue they sit in (40-80% brighter)"),
    LesionKind("dark", (0.3, 0.6), "darker than the tissue they sit in (40-70% darker)"),
    LesionKind("pasted", None, "tissue of another subject's slice 6-12 levels away, at the mean intensity of the "
                               "tissue it replaces"),
)}


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """mask (H, W) bool eroded by a square of side 2 * pixels + 1."""
    eroded = mask.copy()
    for _ in range(pixels):
        padded = np.pad(eroded, 1)
        eroded = np.logical_and.reduce([padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return eroded


def lesion_weight(shape: tuple[int, int], centre: tuple[float, float], radius: float,
                  rng: np.random.Generator) -> np.ndarray:
    """One lesion's soft weight (H, W) in [0, 1]: an ellipse with a wobbling outline and a soft edge."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dy, dx = rows - centre[0], columns - centre[1]
    angle = rng.uniform(0, np.pi)
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    axes = radius * (1 + rng.uniform(-0.25, 0.25, size=2))
    theta = np.arctan2(across / axes[1], along / axes[0])
    wobble = 1 + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3))
    distance = np.hypot(along / axes[0], across / axes[1]) / wobble  # 1 on the outline
    return 1 / (1 + np.exp(-(1 - distance) * radius / EDGE))


def insert_lesions(pixels: np.ndarray, kind: LesionKind, rng: np.random.Generator, lesion_rate: float = 0.5,
                   donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One slice uint8 (H, W) with lesions of `kind` inserted (see the module docstring) and its mask (H, W) bool;
    the slice as it was and an empty mask when it draws none, or has too little brain to hold one. A pasted kind
    takes its tissue from `donor`, another slice uint8 (H, W), and sits where both slices are brain."""
    if kind.pasted and donor is None:
        raise ValueError("pasted lesions need a donor slice")
    brain = pixels > 0 if donor is None else (pixels > 0) & (donor > 0)
    centres = np.argwhere(_erode(brain, MARGIN))
    if rng.uniform() >= lesion_rate or len(centres) == 0:
        return pixels, np.zeros(pixels.shape, bool)
    weight = np.zeros(pixels.shape, np.float32)
    contrast = np.ones(pixels.shape, np.float32)
    lesioned = pixels.astype(np.float32)
    for _ in range(rng.integers(LESIONS_PER_SLICE[0], LESIONS_PER_SLICE[1] + 1)):
        radius = float(np.exp(rng.uniform(*np.log(kind.radius_range))))
        one = lesion_weight(pixels.shape, tuple(centres[rng.integers(len(centres))]), radius, rng) * brain
        if kind.pasted:  # the donor's tissue, scaled to the mean of the tissue it replaces
            ratio = np.sum(one * lesioned) / max(float(np.sum(one * donor)), 1e-6)
            lesioned = lesioned * (1 - one) + one * ratio * donor
        else:
            contrast = np.where(one > weight, rng.uniform(*kind.contrast), contrast)  # the strongest lesion's
        weight = np.maximum(weight, one)
    if not kind.pasted:
        lesioned = lesioned * (1 + weight * (contrast - 1))
    return np.clip(np.rint(lesioned), 0, 255).astype(np.uint8), weight > 0.5


def donor_index(cases: np.ndarray, numbers: np.ndarray, index: int, rng: np.random.Generator) -> int:
    """The slice (an index into cases and numbers, (N,) each) that gives slice `index` its pasted tissue: a slice of
    another subject, DONOR_SHIFT levels above or below (whichever lies within the subject's slices; the split must
    hold two subjects)."""
    others = np.unique(cases[cases != cases[index]])
    if not others.size:
        raise InputError("pasted lesions take their tissue from another subject, and the split holds only one")
    case = rng.choice(others)
    shift = int(rng.integers(DONOR_SHIFT[0], DONOR_SHIFT[1] + 1)) * (1 if rng.uniform() < 0.5 else -1)
    levels = numbers[cases == case]
    level = numbers[index] + shift
    if not levels.min() <= level <= levels.max():
        level = numbers[index] - shift
    level = int(np.clip(level, levels.min(), levels.max()))
    return int(np.flatnonzero((cases == case) & (numbers == level))[0])


def lesioned_arrays(kind: LesionKind, split: str = "test", subjects: synthetic.SubjectSplit = synthetic.SubjectSplit(),
                    seed: int = 0, lesion_rate: float = 0.5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The embedded data's `split` with lesions: slices uint8 (N, 256, 256), masks bool (N, 256, 256) and file names
    in the OASIS layout (case_<id>_slice_<n>.nii.png)."""
    case_ids = subjects.case_ids()[split]
    pixels, cases, numbers = synthetic.subject_arrays(case_ids, seed)
    slices, masks, names = [], [], []
    for index, (image, case, number) in enumerate(zip(pixels, cases, numbers)):
        rng = np.random.default_rng([seed, int(case), int(number), list(LESION_KINDS).index(kind.name)])
        donor = pixels[donor_index(cases, numbers, index, rng)] if kind.pasted else None
        lesioned, mask = insert_lesions(image, kind, rng, lesion_rate, donor)
        slices.append(lesioned)
        masks.append(mask)
        names.append(f"case_{case:03d}_slice_{number}.nii.png")
    return np.stack(slices), np.stack(masks), names


def image_folder(root: Path, split: str) -> Path:
    """Where `write_lesions` puts a split's lesioned slices."""
    return root / f"keras_png_slices_{split}"


def mask_folder(root: Path, split: str) -> Path:
    """Where `write_lesions` puts a split's lesion masks, under the slices' own names."""
    return root / f"keras_png_slices_mask_{split}"


def write_lesions(root: str | Path, kind: str, split: str = "test",
                  subjects: synthetic.SubjectSplit = synthetic.SubjectSplit(), seed: int = 0,
                  lesion_rate: float = 0.5) -> tuple[int, int]:
    """Writes the embedded data's `split` with lesions of `kind` into `root`: slices in keras_png_slices_SPLIT, masks
    (0 or 255) of the same names in keras_png_slices_mask_SPLIT, and a README with the recipe and the template's
    notice. Returns (slices, slices with lesions). Nothing is overwritten."""
    if kind not in LESION_KINDS:
        raise InputError(f"unknown lesion kind {kind!r}: choose one of {', '.join(LESION_KINDS)}")
    if split not in synthetic.SPLITS:
        raise InputError(f"unknown split {split!r}: choose one of {', '.join(synthetic.SPLITS)}")
    if not 0 < lesion_rate <= 1:
        raise InputError(f"the lesion rate must be in (0, 1], got {lesion_rate}")
    root = folder_to_write(root, "FOLDER")
    folders = image_folder(root, split), mask_folder(root, split)
    existing = [str(folder) for folder in folders if folder.exists()]
    if existing:
        raise InputError(f"{existing[0]} already exists: give a new or empty folder (nothing was overwritten)")
    slices, masks, names = lesioned_arrays(LESION_KINDS[kind], split, subjects, seed, lesion_rate)
    for folder in folders:
        folder.mkdir(parents=True)
    for image, mask, name in zip(slices, masks, names):
        Image.fromarray(image).save(folders[0] / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folders[1] / name)
    notice = resources.files(synthetic.__package__).joinpath("resources/NOTICE").read_text()
    (root / "README.txt").write_text(
        f"{synthetic.ANNOUNCEMENT}\nMade by `python -m keras_vqvae.data make-lesions` with seed {seed}: the {split} "
        f"split of {dataclasses.asdict(subjects)} subjects, lesions {LESION_KINDS[kind].description} on "
        f"{lesion_rate:.0%} of the slices.\n\n{__doc__}\n{notice}")
    return len(slices), int(masks.any(axis=(1, 2)).sum())
