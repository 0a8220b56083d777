"""Brain slices from a folder or from the embedded synthetic set (`keras_vqvae.data.datasets` makes their `tf.data`
pipelines).

Three folder layouts are understood:

* the OASIS layout: a folder holding ``keras_png_slices_train``, ``keras_png_slices_validate`` and
  ``keras_png_slices_test``; where the segmentation folders ``keras_png_slices_seg_*`` are beside them, each slice
  is paired with its tissue labels by name (`keras_vqvae.data.labels`);
* one split folder, or any folder of PNG/JPEG slices: it is split by subject into train/validate/test,
  deterministically by seed, so that no subject is in two splits.

Subjects are read from file names such as ``case_001_slice_0.nii.png`` (subject 001, slice 0).
Images are checked when the folder is read, so a corrupt file, or one the pipeline cannot decode, is named before
training starts, not deep inside it.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_vqvae.data import synthetic
from keras_vqvae.data.labels import LABEL_FOLDER_PREFIX, paired_label_files
from keras_vqvae.data.sets import SliceSet, Slices
from keras_vqvae.errors import InputError, existing_folder

SPLITS = synthetic.SPLITS
OASIS_FOLDERS = {split: f"keras_png_slices_{split}" for split in SPLITS}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_NAME_PATTERNS = (
    re.compile(r"case_(?P<case>[^_]+)_slice_(?P<slice>\d+)", re.IGNORECASE),
    re.compile(r"^(?P<case>.+?)[_-]+slice[_-]*(?P<slice>\d+)", re.IGNORECASE),
)


def load_slices(path: str | Path | None = None, seed: int = 0,
                synthetic_subjects: synthetic.SubjectSplit = synthetic.SubjectSplit()) -> Slices:
    """The three splits of a data source: a folder of slices, or the embedded synthetic subjects.

    Args:
        path: a folder in the OASIS layout, one split folder, or any folder of PNG/JPEG slices (see the module
            docstring; `read_folder`); None for the embedded synthetic data (`synthetic_slices`).
        seed: the seed of the split by subject (a folder that is not in the OASIS layout) or of the virtual
            subjects.
        synthetic_subjects: with the embedded data, the virtual subjects of train, validate and test.

    Returns:
        `Slices`: `train`, `validate` and `test` `SliceSet`s (subject-disjoint), a one-line description and notes on
        what was done to the input (conversions, skipped files). An InputError names a missing or empty folder, a
        corrupt image or an incomplete OASIS layout before anything is decoded.
    """
    if path is None:
        return synthetic_slices(synthetic_subjects, seed)
    return read_folder(path, seed)


def load_split(path: str | Path | None, name: str, seed: int = 0,
               synthetic_subjects: synthetic.SubjectSplit = synthetic.SubjectSplit()) -> SliceSet:
    """The split `name` ('train', 'validate' or 'test') of the source `load_slices` reads, without making the
    other splits' virtual subjects when it is the embedded data."""
    if path is None:
        return _synthetic_set(name, synthetic_subjects.case_ids()[name], seed)
    return dict(zip(synthetic.SPLITS, read_folder(path, seed).splits()))[name]


def synthetic_slices(subjects: synthetic.SubjectSplit = synthetic.SubjectSplit(), seed: int = 0) -> Slices:
    """The embedded default data: virtual subjects made from the MNI152 template, in memory.

    Args:
        subjects: how many virtual subjects each split holds (48, 8, 8 by default), 32 slices each.
        seed: the seed of their anatomy and scanner; the same seed gives the same slices.

    Returns:
        `Slices` of 256x256 uint8 pixels held in memory with their tissue labels, named and numbered as OASIS names
        its slices.
    """
    sets = {split: _synthetic_set(split, ids, seed) for split, ids in subjects.case_ids().items()}
    return Slices(**sets, description=f"embedded synthetic data (seed {seed})", notes=(synthetic.ANNOUNCEMENT,))


def extra_synthetic_slices(subjects: synthetic.SubjectSplit, count: int, seed: int = 0) -> SliceSet:
    """`count` further virtual subjects of the embedded data, in none of the splits of `subjects` (see
    `SubjectSplit.extra_case_ids`), as a set named 'extra'."""
    return _synthetic_set("extra", subjects.extra_case_ids(count), seed)


def _synthetic_set(name: str, subjects: list[int], seed: int) -> SliceSet:
    pixels, case_ids, slice_numbers = synthetic.subject_arrays(subjects, seed)
    return SliceSet(name, tuple(f"{i:03d}" for i in case_ids), tuple(int(n) for n in slice_numbers), pixels=pixels,
                    labels=synthetic.subject_labels(subjects, seed))


def read_folder(path: str | Path, seed: int = 0) -> Slices:
    """Slices from a folder: in the OASIS layout, its three split folders; any other folder, split by subject.

    Args:
        path: the folder (a leading ~ is the home folder).
        seed: the seed of the split by subject (80/10/10) of a folder that is not in the OASIS layout.

    Returns:
        `Slices` of the folder's image files, every one checked to decode (an InputError names the first that does
        not), with their label files in the OASIS layout when its segmentation folders are there (each checked,
        `labels.paired_label_files`), and notes on the images that are converted or skipped.
    """
    root = existing_folder(path, "data folder", "give the folder that holds keras_png_slices_train, _validate and "
                                                "_test (or any folder of PNG slices), or leave --data out for the "
                                                "embedded data")
    present = {split: root / folder for split, folder in OASIS_FOLDERS.items() if (root / folder).is_dir()}
    if present:
        missing = [OASIS_FOLDERS[s] for s in SPLITS if s not in present]
        if missing:
            raise InputError(f"{root} is in the OASIS layout but lacks {', '.join(missing)}: restore it, "
                             f"or give one split folder (e.g. {present[next(iter(present))]}) to split it by subject")
        scans = {split: _scan(folder) for split, folder in present.items()}
        labels = _oasis_labels(root, scans)
        sets = {split: _slice_set(split, scan.files, labels.get(split, ())) for split, scan in scans.items()}
        notes = _notes(list(scans.values()))
        description = f"OASIS layout at {root}{' with tissue labels' if labels else ''}"
        return Slices(**sets, description=description, notes=notes)

    scan = _scan(root)
    sets, split_notes = _split_by_subject(scan.files, seed)
    description = f"slices in {root}, split by subject with seed {seed}"
    return Slices(**sets, description=description, notes=_notes([scan]) + split_notes)


def read_images(path: str | Path) -> tuple[SliceSet, tuple[str, ...]]:
    """Every slice in one folder, not split.

    Args:
        path: a folder of PNG or JPEG slices.

    Returns:
        (a `SliceSet` named 'images' of its files in name order, with each file's subject and slice number where the
        name carries them; notes on conversions), every file checked to decode.
    """
    scan = _scan(existing_folder(path, "data folder", "give a folder of PNG or JPEG slices"))
    return _slice_set("images", scan.files), _notes([scan])


@dataclasses.dataclass
class _Scan:
    """What reading one folder found: image files, and counts of everything that needs telling the user."""

    files: list[Path]
    modes: Counter
    sizes: list[tuple[int, int]]  # (width, height) of each of `files`
    ignored: list[str]


def _scan(folder: Path) -> _Scan:
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        found = f" (found only {len(entries)} other files, e.g. {entries[0].name})" if entries else " (it is empty)"
        raise InputError(f"no PNG or JPEG slices in {folder}{found}: give the folder that holds the slices")
    modes, sizes, undecodable = Counter(), [], []
    for file in files:
        try:
            with Image.open(file) as image:
                modes[image.mode] += 1
                sizes.append(image.size)
                if not _decodable(image.format, image.mode):
                    undecodable.append(f"{file} holds {image.format} {image.mode} image data")
                if image.format == "PNG":
                    image.verify()  # every chunk's checksum, to the end of the file, without decoding pixels
                else:
                    image.load()  # JPEG has no checksums to verify: decoding is what finds a file cut short
        except (OSError, SyntaxError, UnidentifiedImageError) as error:
            raise InputError(f"{file} is not a readable image ({error}): copy it again or delete it") from None
    if undecodable:
        others = f" (and {len(undecodable) - 1} more files like it)" if len(undecodable) > 1 else ""
        raise InputError(f"{undecodable[0]}{others}, which the pipeline cannot decode (it reads PNG, and grayscale "
                         f"or RGB JPEG): save it as a PNG, or delete it")
    ignored = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
    return _Scan(files, modes, sizes, ignored)


def _oasis_labels(root: Path, scans: dict[str, _Scan]) -> dict[str, list[Path]]:
    """Each split's label files, from the segmentation folders beside the slices: none when there are none; an
    InputError when only some are there."""
    folders = {split: root / f"{LABEL_FOLDER_PREFIX}{split}" for split in scans}
    present = [split for split, folder in folders.items() if folder.is_dir()]
    if not present:
        return {}
    if len(present) < len(folders):
        missing = next(folder.name for folder in folders.values() if not folder.is_dir())
        raise InputError(f"{root} holds {folders[present[0]].name} but not {missing}: restore it, or move the "
                         f"{LABEL_FOLDER_PREFIX}* folders away to train without tissue labels")
    return {split: paired_label_files(scans[split].files, scans[split].sizes, folders[split])
            for split in scans}


def _decodable(image_format: str | None, mode: str) -> bool:
    """Whether `SliceSet.decoded` decodes an image that Pillow reads as `image_format` in `mode`: TensorFlow reads PNG in
    every mode and JPEG in L or RGB (MPO is a JPEG with more pictures after the first), but not CMYK JPEG, nor GIF,
    BMP, WebP or TIFF into one channel, whatever the file's name."""
    return image_format == "PNG" or (image_format in ("JPEG", "MPO") and mode in ("L", "RGB"))


def _notes(scans: list[_Scan]) -> tuple[str, ...]:
    modes = sum((s.modes for s in scans), Counter())
    sizes = Counter(size for s in scans for size in s.sizes)
    ignored = [name for s in scans for name in s.ignored]
    notes = []
    converted = {mode: n for mode, n in modes.items() if mode not in ("L", "I;16", "I;16B", "I")}
    if converted:
        kinds = ", ".join(f"{n} {mode}" for mode, n in sorted(converted.items()))
        notes.append(f"converted colour, palette or alpha images to plain grayscale ({kinds})")
    wide = sum(n for mode, n in modes.items() if mode.startswith("I"))
    if wide:
        notes.append(f"scaled {wide} 16-bit images to the same [0, 1] range as 8-bit ones")
    if len(sizes) > 1 or any(w != h for w, h in sizes):
        shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(4))
        notes.append(f"images of several or non-square sizes ({shown}) are padded to square and resized")
    if ignored:
        notes.append(f"ignored {len(ignored)} files that are not PNG/JPEG images (e.g. {ignored[0]})")
    return tuple(notes)


def _parse_name(path: Path) -> tuple[str, int] | None:
    for pattern in _NAME_PATTERNS:
        match = pattern.search(path.name)
        if match:
            return match["case"], int(match["slice"])
    return None


def _slice_set(split: str, files: list[Path], label_files: list[Path] | tuple = ()) -> SliceSet:
    parsed = [_parse_name(p) or (p.stem, -1) for p in files]
    return SliceSet(split, tuple(c for c, _ in parsed), tuple(n for _, n in parsed), files=tuple(map(str, files)),
                    label_files=tuple(map(str, label_files)))


def _split_by_subject(files: list[Path], seed: int) -> tuple[dict[str, SliceSet], tuple[str, ...]]:
    """Train/validate/test by subject: subjects are shuffled by `seed` and dealt out by SPLIT_FRACTIONS."""
    everything = _slice_set("all", files)
    subjects = sorted(set(everything.case_ids))
    if len(subjects) < 3:
        raise InputError(f"{files[0].parent} holds {len(subjects)} subject(s); splitting into train/validate/test "
                         f"needs at least 3: name files like case_001_slice_0.png, or add more subjects")
    shuffled = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    num_validate, num_test = np.maximum(1, np.round(np.array(SPLIT_FRACTIONS[1:]) * len(subjects)).astype(int))
    split_of = {case: "train" for case in shuffled}
    split_of.update({case: "test" for case in shuffled[:num_test]})
    split_of.update({case: "validate" for case in shuffled[num_test:num_test + num_validate]})
    sets = {}
    for split in SPLITS:
        keep = [i for i, case in enumerate(everything.case_ids) if split_of[case] == split]
        sets[split] = _slice_set(split, [files[i] for i in keep])
    notes = ()
    if all(n == -1 for n in everything.slice_numbers):
        notes = ("file names carry no subject id (like case_001_slice_0.png), so each image counts as its own "
                 "subject and slices of one brain may land in different splits",)
    return sets, notes
