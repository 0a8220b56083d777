"""Declaring settings: one dataclass field is one command-line flag, with its help text and its check beside it.

    epochs: int = option(40, "number of training epochs", check=at_least(1))

`check_settings` runs every field's check (a dataclass calls it from `__post_init__`), and `keras_vqvae.cli` makes
the flags from the fields, so that nothing about a setting is written twice. A field may hold settings of its own
(`nested`): their flags take its name as their prefix.

    pixelcnn: PixelCNNSettings = nested(PixelCNNSettings)   # pixelcnn.epochs is the flag --pixelcnn-epochs
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from keras_vqvae.errors import InputError


def option(default, help: str, check: Callable[[object], bool] | None = None, **metadata):
    """A dataclass field with its flag's help text and the check its values must pass (see `check_settings`).

    Other metadata: `choices` (the allowed values), `parse` (text -> value, for the flag)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, **metadata})


def nested(settings_class: type):
    """A dataclass field holding an instance of the settings dataclass `settings_class` (its defaults unless given),
    whose fields are settings too, each named with this field's name as prefix (see `flat_fields`)."""
    return dataclasses.field(default_factory=settings_class, metadata={"nested": settings_class})


def flat_fields(config_class) -> dict[str, tuple[str, dataclasses.Field]]:
    """Every setting of the dataclass `config_class` by its flat name, its flag's without the dashes, with the prefix
    of that name: `image_size` -> ('', its field); `pixelcnn_epochs` -> ('pixelcnn', the field `epochs` of the
    settings nested as `pixelcnn`)."""
    found = {}
    for field in dataclasses.fields(config_class):
        inner = field.metadata.get("nested")
        if inner is None:
            found[field.name] = ("", field)
        else:
            found.update({f"{field.name}_{f.name}": (field.name, f) for f in dataclasses.fields(inner)})
    return found


def flat_values(config) -> dict[str, object]:
    """Every setting of the dataclass instance `config` by its flat name (see `flat_fields`)."""
    return {name: getattr(getattr(config, prefix) if prefix else config, field.name)
            for name, (prefix, field) in flat_fields(type(config)).items()}


def from_flat(config_class, values: dict[str, object]):
    """The `config_class` whose settings `values` gives by flat name (see `flat_fields`); the others keep their
    defaults, and names that are no setting of it are ignored."""
    given: dict[str, dict[str, object]] = {}
    for name, (prefix, field) in flat_fields(config_class).items():
        if name in values:
            given.setdefault(prefix, {})[field.name] = values[name]
    groups = {f.name: f.metadata["nested"](**given.get(f.name, {}))
              for f in dataclasses.fields(config_class) if "nested" in f.metadata}
    return config_class(**given.get("", {}), **groups)


@dataclasses.dataclass(frozen=True)
class Check:
    """A setting's check: `test(value)` says whether a value can be used, `rule` says which can ("at least 1"), for
    the error that names the flag."""

    test: Callable[[object], bool]
    rule: str

    def __call__(self, value) -> bool:
        return self.test(value)


def at_least(smallest) -> Check:
    return Check(lambda value: value >= smallest, f"at least {smallest}")


def between(smallest, largest) -> Check:
    return Check(lambda value: smallest <= value <= largest, f"between {smallest} and {largest}")


positive = Check(lambda value: value > 0, "positive")


def odd_at_least(smallest: int) -> Check:
    return Check(lambda value: value >= smallest and value % 2 == 1, f"odd and at least {smallest}")


def power_of_two_at_least(smallest: int) -> Check:
    return Check(lambda value: value >= smallest and 2 ** round(math.log2(value)) == value,
                 f"a power of two, at least {smallest}")


def flag(name: str, prefix: str = "") -> str:
    """The command-line flag of field `name`: --image-size for image_size."""
    return "--" + (f"{prefix}_{name}" if prefix else name).replace("_", "-")


def shown(value) -> str:
    """A setting's value as it is typed on the command line: 48,8,8 for a tuple."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_settings(settings, prefix: str = "") -> None:
    """Raises InputError naming the flag of the first field of the dataclass instance `settings` whose value fails
    its check, with the values it takes (a `Check`'s rule); a float must also be finite (not inf or nan). `prefix`
    is the flags' prefix ('pixelcnn' for --pixelcnn-epochs); nested settings check themselves."""
    for field in dataclasses.fields(settings):
        check, value = field.metadata.get("check"), getattr(settings, field.name)
        if "nested" in field.metadata and not isinstance(value, field.metadata["nested"]):
            raise TypeError(f"{field.name} must be a {field.metadata['nested'].__name__}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            rule = "a finite number"
        elif check is not None and not check(value):
            rule = getattr(check, "rule", None)
        else:
            continue
        takes = f" (it must be {rule})" if rule else ""
        raise InputError(f"{flag(field.name, prefix)} {shown(value)} is out of range{takes}: {field.metadata['help']}")
