"""The public API explains itself as Keras' own does, and docs/api.md is drawn from it.

Every name `keras_vqvae` exports is documented: a function or class that takes arguments gives `Args:` (one entry
per argument), a function that returns something gives `Returns:`. docs/api.md lists them all with their signatures
and docstrings, exactly as the code has them. After changing a public docstring, rewrite the page with

    python3 tests/test_api_page.py
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

import pytest

import keras_vqvae

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
INTRODUCTION = """# Python API

Every name `keras_vqvae` exports, with its signature and docstring as the code has them (the page is written by
`python3 tests/test_api_page.py`, and a test keeps it so). The [README](../README.md#python-api) shows them at work;
a whole run is `keras_vqvae.training.train(TrainConfig(...))`.
"""
KERAS_ARGUMENTS = {"self", "args", "kwargs", "name", "dtype", "trainable"}  # documented by Keras


def public_names() -> list[str]:
    return list(keras_vqvae.__all__)


def documented_arguments(doc: str, obj=None) -> set[str]:
    """The argument names an `Args:` (or, for a dataclass, `Attributes:`) section lists (`name: ...` at its first
    indentation, up to the first blank line), and the fields of a dataclass of settings that carry their own help
    text (`keras_vqvae.settings.option`)."""
    names = {field.name for field in dataclasses.fields(obj) if "help" in field.metadata} if (
        dataclasses.is_dataclass(obj)) else set()
    lines = inspect.cleandoc(doc).splitlines()
    for start, line in enumerate(lines):
        if line.strip() in ("Args:", "Attributes:"):
            section = []
            for entry in lines[start + 1:]:
                if not entry.strip():
                    break
                section.append(entry)
            indent = min((len(entry) - len(entry.lstrip()) for entry in section), default=0)
            names |= {match.group(1) for entry in section if len(entry) - len(entry.lstrip()) == indent
                      for match in [re.match(r"\s*(\w+):", entry)] if match}
    return names


def arguments_of(obj) -> set[str]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    parameters = inspect.signature(target).parameters
    return {name for name, parameter in parameters.items() if name not in KERAS_ARGUMENTS
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}


def page() -> str:
    sections = [INTRODUCTION]
    for name in public_names():
        obj = getattr(keras_vqvae, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        target = obj.__init__ if inspect.isclass(obj) else obj
        signature = str(inspect.signature(target)).replace("(self, ", "(").replace("(self)", "()")
        kind = "class" if inspect.isclass(obj) else "function"
        sections.append(f"## `{name}`\n\n{kind} `{obj.__module__}.{name}{signature}`\n\n"
                        f"```text\n{inspect.cleandoc(obj.__doc__ or '')}\n```\n")
    return "\n".join(sections)


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_documents_its_arguments_and_its_result(name):
    obj = getattr(keras_vqvae, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        pytest.skip(f"{name} is neither a class nor a function")
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    if inspect.isclass(obj):  # an inherited constructor is documented where it is defined
        owner = next(c for c in obj.__mro__ if "__init__" in vars(c))
        doc += "\n\n" + (inspect.getdoc(owner) or "")
    missing = arguments_of(obj) - documented_arguments(doc, obj)
    assert not missing, f"{name}'s docstring gives no Args: entry for {sorted(missing)}"
    if inspect.isfunction(obj) and inspect.signature(obj).return_annotation not in (None, "None"):
        assert re.search(r"^\s*Returns:", doc, re.M), f"{name}'s docstring has no Returns: section"


def test_the_api_page_is_drawn_from_the_docstrings():
    assert PAGE.read_text() == page(), "docs/api.md is out of date: rewrite it with python3 tests/test_api_page.py"


if __name__ == "__main__":
    PAGE.write_text(page())
    sys.exit(0)
