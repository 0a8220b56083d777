"""The README's command-line section shows every command's --help exactly as the code prints it.

After changing a flag or its help, rewrite the README's help blocks with

    python3 tests/test_readme.py
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
WIDTH = 100  # columns the help is laid out in, whatever the terminal
COMMANDS = {  # as shown in the README -> (module, arguments)
    "python3 -m keras_vqvae": ("keras_vqvae.__main__", []),
    "python3 -m keras_vqvae.train --help": ("keras_vqvae.train", ["--help"]),
    "python3 -m keras_vqvae.predict --help": ("keras_vqvae.predict", ["--help"]),
    "python3 -m keras_vqvae.export --help": ("keras_vqvae.export", ["--help"]),
    "python3 -m keras_vqvae.data verify --help": ("keras_vqvae.data.__main__", ["verify", "--help"]),
    "python3 -m keras_vqvae.data make-sample --help": ("keras_vqvae.data.__main__", ["make-sample", "--help"]),
}
BLOCK = re.compile(r"<!-- help: (?P<command>.+?) -->\n```text\n(?P<text>.*?)```\n", re.DOTALL)


def help_text(command: str) -> str:
    """What `command` prints, laid out in WIDTH columns."""
    module_name, arguments = COMMANDS[command]
    module = __import__(module_name, fromlist=["main"])
    output = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH + 2)  # argparse leaves two columns free
    try:
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            if arguments:
                module.main(arguments)
            else:
                print(module.GUIDE)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return output.getvalue()


def readme_blocks(text: str) -> dict[str, str]:
    return {match["command"]: match["text"] for match in BLOCK.finditer(text)}


def test_the_readme_shows_the_help_of_every_command():
    assert sorted(readme_blocks(README.read_text())) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_readme_help_is_what_the_command_prints(command):
    assert readme_blocks(README.read_text())[command] == help_text(command), (
        f"the README's help of {command!r} is out of date: run python3 tests/test_readme.py")


def test_the_readme_sections_come_in_a_newcomers_order():
    headings = re.findall(r"^## (.+)$", README.read_text(), flags=re.MULTILINE)
    expected = ["Set-up on a fresh machine", "Using OASIS", "Python API", "Command line", "Results",
                "Reusing a trained model without this package", "Scaling up", "Notices and citations"]
    assert [heading for heading in headings if heading in expected] == expected


def update() -> None:
    text = README.read_text()
    text = BLOCK.sub(lambda match: f"<!-- help: {match['command']} -->\n```text\n{help_text(match['command'])}```\n",
                     text)
    README.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(README.parent))
    update()
