"""Declaring settings: one dataclass field is one command-line flag, with its help text and its check beside it.

    epochs: int = option(40, "number of training epochs", check=at_least(1))

`check_settings` runs every field's check (a dataclass calls it from `__post_init__`), and `keras_vqvae.cli` makes
the flags from the fields, so that nothing about a setting is written twice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from keras_vqvae.errors import InputError


def option(default, help: str, check: Callable[[object], bool] | None = None, **metadata):
    """A dataclass field with its flag's help text and the check its values must pass (see `check_settings`).

    Other metadata: `choices` (the allowed values), `parse` (text -> value, for the flag), `resumable` (a finished
    run may go on with another value), `retrains_prior` (another value retrains the priors, not the VQ-VAE)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, **metadata})


def at_least(smallest) -> Callable[[object], bool]:
    return lambda value: value >= smallest


def positive(value) -> bool:
    return value > 0


def odd_at_least(smallest: int) -> Callable[[int], bool]:
    return lambda value: value >= smallest and value % 2 == 1


def power_of_two_at_least(smallest: int) -> Callable[[int], bool]:
    return lambda value: value >= smallest and 2 ** round(math.log2(value)) == value


def flag(name: str, prefix: str = "") -> str:
    """The command-line flag of field `name`: --image-size for image_size."""
    return "--" + (f"{prefix}_{name}" if prefix else name).replace("_", "-")


def shown(value) -> str:
    """A setting's value as it is typed on the command line: 48,8,8 for a tuple."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_settings(settings, prefix: str = "") -> None:
    """Raises InputError naming the flag of the first field of the dataclass instance `settings` whose value fails
    its check; `prefix` is the flags' prefix ('pixelcnn' for --pixelcnn-epochs)."""
    for field in dataclasses.fields(settings):
        check, value = field.metadata.get("check"), getattr(settings, field.name)
        if check is not None and not check(value):
            raise InputError(f"{flag(field.name, prefix)} {shown(value)} is out of range: {field.metadata['help']}")
