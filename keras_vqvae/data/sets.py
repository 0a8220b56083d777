"""What a data source gives: `SliceSet`, the slices of one split (files or pixels in memory, with each slice's
subject and position), and `Slices`, the three splits of one source."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class SliceSet:
    """The slices of one split: where each image comes from, and which subject and slice number it is.

    Exactly one of `files` (image paths) and `pixels` (uint8 array (N, H, W) held in memory) is given.
    `slice_numbers` is -1 where a file name carries none. Tissue labels, where the source has them, come the same
    way: `label_files` (segmentation PNGs in OASIS's encoding, `TISSUE_VALUES`) beside `files`, or `labels` (uint8
    (N, H, W) in 0..3, `TISSUES`) beside `pixels`.
    """

    name: str
    case_ids: tuple[str, ...]
    slice_numbers: tuple[int, ...]
    files: tuple[str, ...] = ()
    pixels: np.ndarray | None = None
    label_files: tuple[str, ...] = ()
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def num_subjects(self) -> int:
        return len(set(self.case_ids))

    @property
    def has_labels(self) -> bool:
        return self.labels is not None or bool(self.label_files)

    def decoded(self) -> tf.data.Dataset:
        """Images as float32 in [0, 1], shape (H, W, 1) at their stored size, in order."""
        if self.pixels is not None:
            dataset = tf.data.Dataset.from_tensor_slices(self.pixels[..., None])
            return dataset.map(lambda pixels: tf.image.convert_image_dtype(pixels, tf.float32))
        dataset = tf.data.Dataset.from_tensor_slices(list(self.files))
        return dataset.map(_decode_file, num_parallel_calls=tf.data.AUTOTUNE)

    def decoded_labels(self) -> tf.data.Dataset:
        """Tissue labels as uint8 in 0..3 (`TISSUES`), shape (H, W, 1) at their stored size, in order."""
        if self.labels is not None:
            return tf.data.Dataset.from_tensor_slices(self.labels[..., None])
        if not self.label_files:
            raise ValueError(f"the {self.name} split has no tissue labels")
        dataset = tf.data.Dataset.from_tensor_slices(list(self.label_files))
        return dataset.map(_decode_label_file, num_parallel_calls=tf.data.AUTOTUNE)

    def reordered(self, order: np.ndarray) -> SliceSet:
        """The same slices in `order` (n,), a permutation of their indices."""
        return dataclasses.replace(
            self, case_ids=tuple(self.case_ids[i] for i in order),
            slice_numbers=tuple(self.slice_numbers[i] for i in order),
            files=tuple(self.files[i] for i in order) if self.files else (),
            pixels=None if self.pixels is None else self.pixels[order],
            label_files=tuple(self.label_files[i] for i in order) if self.label_files else (),
            labels=None if self.labels is None else self.labels[order])

    def fingerprint(self, with_labels: bool = False) -> str:
        """A digest of what the set holds: its name and, per slice in order, the file with its size and modification
        time, or the pixels held in memory, and with `with_labels` the labels alike. Another folder, split, order or
        a changed file gives another one."""
        digest = hashlib.sha256(f"{self.name}\n".encode())
        arrays, files = [self.pixels], list(self.files)
        if with_labels:
            arrays.append(self.labels)
            files += self.label_files
        for array in arrays:
            if array is not None:
                digest.update(str(array.shape).encode())
                digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
        for file in files:
            status = os.stat(file)
            digest.update(f"{os.path.abspath(file)}|{status.st_size}|{status.st_mtime_ns}\n".encode())
        return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Slices:
    """The three splits of one data source, a one-line description, and notes on what was done to the input."""

    train: SliceSet
    validate: SliceSet
    test: SliceSet
    description: str
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        counts = ", ".join(f"{s.name} {len(s)} slices / {s.num_subjects} subjects" for s in self.splits())
        return f"{self.description}: {counts}"

    def splits(self) -> tuple[SliceSet, SliceSet, SliceSet]:
        return self.train, self.validate, self.test

    @property
    def carry_positions(self) -> bool:
        """Whether every file name carries its slice's position (number) in its volume."""
        return all(number >= 0 for split in self.splits() for number in split.slice_numbers)

    @property
    def num_positions(self) -> int:
        """How many slice positions the names carry: the highest number plus one (0 when they carry none)."""
        return max(max(split.slice_numbers, default=-1) for split in self.splits()) + 1


def _decode_label_file(path: tf.Tensor) -> tf.Tensor:
    # OASIS stores labels 0..3 as 0, 85, 170, 255 (checked when the folder is read): the nearest label of each value.
    values = tf.io.decode_png(tf.io.read_file(path), channels=1)
    values.set_shape([None, None, 1])
    return tf.cast(tf.round(tf.cast(values, tf.float32) / 85.0), tf.uint8)


def _decode_file(path: tf.Tensor) -> tf.Tensor:
    # decode_image scales 8- and 16-bit images alike to [0, 1] and converts RGB(A) and palettes to luma.
    image = tf.io.decode_image(tf.io.read_file(path), channels=1, dtype=tf.float32, expand_animations=False)
    image.set_shape([None, None, 1])
    return image
