"""Checks a user's copy of the preprocessed OASIS slices against the manifest shipped with the package.

The manifest lists every file of the set as commonly distributed (``keras_png_slices_data``): its folder, name, size
and SHA-256. Comparing a copy file by file tells a complete download from a truncated or corrupt one.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
from collections import defaultdict
from importlib import resources
from pathlib import Path

from keras_vqvae.errors import InputError

MANIFEST = "resources/oasis_keras_png_slices_manifest.csv.gz"


@dataclasses.dataclass(frozen=True)
class FolderReport:
    """How one folder of the copy compares with the manifest; lists hold file names."""

    folder: str
    expected: int
    present: bool
    missing: list[str] = dataclasses.field(default_factory=list)
    extra: list[str] = dataclasses.field(default_factory=list)
    wrong_size: list[str] = dataclasses.field(default_factory=list)
    wrong_hash: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_segmentation(self) -> bool:
        return "_seg_" in self.folder

    @property
    def ok(self) -> bool:
        return self.present and not (self.missing or self.extra or self.wrong_size or self.wrong_hash)

    def describe(self) -> str:
        if not self.present:
            why = "segmentations, not needed for training" if self.is_segmentation else "needed for training"
            return f"{self.folder}: absent ({why})"
        found = self.expected - len(self.missing)
        status = "OK" if self.ok else "PROBLEMS"
        lines = [f"{self.folder}: {found}/{self.expected} files, {len(self.missing)} missing, {len(self.extra)} "
                 f"extra, {len(self.wrong_size)} wrong size, {len(self.wrong_hash)} wrong hash: {status}"]
        for label, names in (("missing", self.missing), ("extra", self.extra), ("wrong size", self.wrong_size),
                             ("wrong hash", self.wrong_hash)):
            if names:
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                lines.append(f"  {label}: {', '.join(names[:5])}{more}")
        return "\n".join(lines)


Manifest = dict[str, dict[str, tuple[int, str]]]  # folder -> file name -> (size in bytes, sha256 hex digest)


def read_manifest(path: str | Path | None = None) -> Manifest:
    """The manifest in gzip-compressed CSV at `path`, by default the one shipped with the package."""
    entries: Manifest = defaultdict(dict)
    source = Path(path) if path is not None else resources.files(__package__).joinpath(MANIFEST)
    with source.open("rb") as compressed:
        with gzip.open(compressed, "rt", newline="") as text:
            for row in csv.DictReader(text):
                entries[row["split_dir"]][row["filename"]] = (int(row["size_bytes"]), row["sha256"])
    return dict(entries)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(io.DEFAULT_BUFFER_SIZE * 16), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_copy(root: str | Path, manifest: Manifest | None = None) -> list[FolderReport]:
    """Compares every folder `manifest` (default: the shipped one) names under `root`: counts, names, sizes, hashes."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: give the folder that holds keras_png_slices_train, _validate, "
                         f"_test (and the seg folders, if you have them)")
    reports = []
    for folder, expected in sorted((manifest or read_manifest()).items()):
        path = root / folder
        if not path.is_dir():
            reports.append(FolderReport(folder, len(expected), present=False))
            continue
        found = {p.name: p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")}
        report = FolderReport(folder, len(expected), present=True,
                              missing=sorted(set(expected) - set(found)), extra=sorted(set(found) - set(expected)))
        for name in sorted(set(expected) & set(found)):
            size, sha256 = expected[name]
            if found[name].stat().st_size != size:
                report.wrong_size.append(name)
            elif _sha256(found[name]) != sha256:
                report.wrong_hash.append(name)
        reports.append(report)
    if not any(r.present for r in reports):
        raise InputError(f"{root} holds none of the OASIS folders ({', '.join(r.folder for r in reports[:3])}, ...): "
                         f"give the folder that contains them")
    return reports
