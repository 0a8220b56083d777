"""Shared command-line plumbing: flags derived from a configuration dataclass, and one-line errors with status 2."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Callable

from keras_vqvae.errors import InputError
from keras_vqvae.settings import flag, flat_fields, from_flat, shown

USAGE_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, naming the problem and pointing to --help."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def argument_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """`parse` for argparse's type=, with its ValueError message shown to the user as it is."""

    @functools.wraps(parse)
    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return wrapped


@argument_type
def finite_float(text: str) -> float:
    """A number for argparse's type=: inf and nan are refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def add_config_arguments(parser: argparse.ArgumentParser, config_class) -> None:
    """One flag per setting of `config_class`, its nested settings' included (see `keras_vqvae.settings.flat_fields`):
    --field-name or --prefix-field-name, typed by its default, with the field's help text. A flag left out is left
    out of the parsed arguments too (see `given_fields`); `config_from_arguments` fills in the field's default."""
    for name, (_, field) in flat_fields(config_class).items():
        help, default = field.metadata["help"].replace("%", "%%"), field.default
        if isinstance(default, bool):  # a switch, off unless given
            parser.add_argument(flag(name), dest=name, action="store_true", default=argparse.SUPPRESS, help=help)
            continue
        parse = argument_type(field.metadata["parse"]) if "parse" in field.metadata else (
            str if default is None else type(default))
        choices = field.metadata.get("choices")
        parser.add_argument(flag(name), dest=name, type=parse, default=argparse.SUPPRESS,
                            choices=choices, metavar=None if choices else name.upper(),  # argparse lists choices
                            help=help if default is None else f"{help} (default: {shown(default)})")


def given_fields(config_class, arguments: argparse.Namespace) -> set[str]:
    """The settings of `config_class` whose flags the command line gave, by flat name (`epochs`, `pixelcnn_epochs`)."""
    return {name for name in flat_fields(config_class) if hasattr(arguments, name)}


def config_from_arguments(config_class, arguments: argparse.Namespace):
    """The configuration the flags give: each setting's flag, or its default where the flag was left out."""
    return from_flat(config_class, {name: getattr(arguments, name) for name in given_fields(config_class, arguments)})


def main_with_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wraps a command's main: line-buffered output, and an InputError printed as one line with exit status 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        if hasattr(sys.stdout, "reconfigure"):  # a real stream, not a notebook's or a test's stand-in
            sys.stdout.reconfigure(line_buffering=True)  # progress shows up at once in logs and pipes too
        try:
            return main(*args, **kwargs) or 0
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return USAGE_ERROR

    return wrapped
