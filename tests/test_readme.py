"""The README is a guide and docs/ the reference, both kept in step with the code: the README stays short (a
newcomer reads it through); docs/commands.md shows every command's --help exactly as the code prints it, the package
map of docs/how-it-works.md lists exactly the package's modules, and every local link leads somewhere.

After changing a flag or its help, rewrite the help blocks of docs/commands.md with

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

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMANDS_PAGE = REPO / "docs" / "commands.md"
HOW_IT_WORKS = REPO / "docs" / "how-it-works.md"
README_WORDS = 2_500  # a guide a newcomer reads through; the reference and the measurement history go to docs/
PACKAGE = REPO / "keras_vqvae"
WIDTH = 100  # columns the help is laid out in, whatever the terminal
COMMANDS = {  # as shown in docs/commands.md -> (module, arguments)
    "python3 -m keras_vqvae": ("keras_vqvae.__main__", []),
    "python3 -m keras_vqvae.train --help": ("keras_vqvae.train", ["--help"]),
    "python3 -m keras_vqvae.predict --help": ("keras_vqvae.predict", ["--help"]),
    "python3 -m keras_vqvae.export --help": ("keras_vqvae.export", ["--help"]),
    "python3 -m keras_vqvae.detect --help": ("keras_vqvae.detect", ["--help"]),
    "python3 -m keras_vqvae.data verify --help": ("keras_vqvae.data.__main__", ["verify", "--help"]),
    "python3 -m keras_vqvae.data make-sample --help": ("keras_vqvae.data.__main__", ["make-sample", "--help"]),
    "python3 -m keras_vqvae.data make-lesions --help": ("keras_vqvae.data.__main__", ["make-lesions", "--help"]),
}
BLOCK = re.compile(r"<!-- help: (?P<command>.+?) -->\n```text\n(?P<text>.*?)```\n", re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")  # [text](target) and ![alt](target)
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
MAP_ROW = re.compile(r"^\| `(?P<path>keras_vqvae/[^`]*)` \|", re.MULTILINE)


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


def help_blocks(text: str) -> dict[str, str]:
    return {match["command"]: match["text"] for match in BLOCK.finditer(text)}


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a markdown text, up to the next `## ` heading."""
    return text.split(f"\n## {heading}\n")[1].split("\n## ")[0]


def test_the_commands_page_shows_the_help_of_every_command_and_the_readme_none():
    assert sorted(help_blocks(COMMANDS_PAGE.read_text())) == sorted(COMMANDS)
    assert help_blocks(README.read_text()) == {}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_commands_page_help_is_what_the_command_prints(command):
    assert help_blocks(COMMANDS_PAGE.read_text())[command] == help_text(command), (
        f"the help of {command!r} in docs/commands.md is out of date: run python3 tests/test_readme.py")


def test_the_readme_names_every_command_in_brief():
    commands = section(README.read_text(), "Command line")
    for command in COMMANDS:
        assert command.removesuffix(" --help") in commands, f"the README's command line section skips {command!r}"


def test_the_readme_names_every_prior_and_the_train_flags_that_are_not_configuration_fields():
    from keras_vqvae.priors import PRIOR_KINDS
    from keras_vqvae.settings import flag, flat_fields
    from keras_vqvae.training import TrainConfig

    readme = README.read_text()
    train_row = next(line for line in readme.splitlines() if line.startswith("| `python3 -m keras_vqvae.train` |"))
    assert all(f"`{name}`" in train_row or f"`--prior {name}`" in train_row for name in PRIOR_KINDS), train_row
    usage = help_text("python3 -m keras_vqvae.train --help").split("\n\n")[0]
    fields = {flag(name) for name in flat_fields(TrainConfig)}
    claim = " ".join(readme.split()).split("Every flag of `train` but ")[1].split(" is a setting of `TrainConfig`")[0]
    named = set(re.findall(r"`(--[a-z-]+)`", claim))  # the flags the README says are not configuration fields
    assert set(re.findall(r"\[(--[a-z-]+)", usage)) - fields == named, claim


def test_the_readme_is_a_guide_of_fewer_than_2500_words():
    words = len(README.read_text().split())
    assert 500 < words < README_WORDS, f"the README has {words} words: move reference and history to docs/"


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def local_links() -> list[tuple[Path, str]]:
    """(page, target) for every link of the README and docs/*.md that is not to a web address."""
    pages = [README, *sorted((REPO / "docs").glob("*.md"))]
    links = {(page, match["target"]) for page in pages for match in LINK.finditer(FENCED.sub("", page.read_text()))}
    return sorted(link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link[1]))


def test_the_readme_links_to_every_docs_page_and_every_page_back_to_it():
    links = local_links()
    from_readme = {(REPO / target.partition("#")[0]).resolve() for page, target in links if page == README}
    assert set((REPO / "docs").glob("*.md")) <= from_readme
    to_readme = {page for page, target in links if (page.parent / target.partition("#")[0]).resolve() == README}
    assert set((REPO / "docs").glob("*.md")) <= to_readme


@pytest.mark.parametrize("page, target", local_links(),
                         ids=[f"{page.relative_to(REPO)}:{target}" for page, target in local_links()])
def test_every_local_link_leads_to_a_file_and_heading_that_exist(page, target):
    path, _, fragment = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
    if fragment:
        headings = re.findall(r"^#+ (.+)$", FENCED.sub("", destination.read_text()), flags=re.MULTILINE)
        assert fragment in {anchor(heading) for heading in headings}, (
            f"{page.relative_to(REPO)} links to {target}, but {destination.name} has no such heading")


def package_map() -> list[str]:
    """The paths in the first column of the package map ("The package" in docs/how-it-works.md), in order."""
    return MAP_ROW.findall(section(HOW_IT_WORKS.read_text(), "The package"))


def test_the_package_map_lists_every_module_once_and_only_modules_that_exist():
    """Every .py file under keras_vqvae/ but the __init__.py files, by its path from the repository's root, and every
    sub-package folder (ending in /); nothing else."""
    listed = package_map()
    assert len(listed) == len(set(listed)), "the package map lists a path twice"
    modules = {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    folders = {path.relative_to(REPO).as_posix() + "/" for path in PACKAGE.rglob("*")
               if path.is_dir() and any(path.glob("*.py"))}
    listed_modules = {path for path in listed if not path.endswith("/")}
    assert listed_modules == modules, (f"the package map misses {sorted(modules - listed_modules)} and "
                                       f"lists {sorted(listed_modules - modules)}, which are not in the package")
    listed_folders = {path for path in listed if path.endswith("/")}
    assert listed_folders == folders, (f"the package map misses the folders {sorted(folders - listed_folders)}"
                                       f" and lists {sorted(listed_folders - folders)}, which are not in the package")


def update() -> None:
    text = COMMANDS_PAGE.read_text()
    text = BLOCK.sub(lambda match: f"<!-- help: {match['command']} -->\n```text\n{help_text(match['command'])}```\n",
                     text)
    COMMANDS_PAGE.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    update()
