"""The one error type that speaks to the user, and the checks of the folders a user names with it.

An `InputError` says what is wrong with something the user gave (a folder, a file, a flag), names it, and says what
to do. The command line prints its message as one line and exits with status 2; library callers catch it as a
`ValueError`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class InputError(ValueError):
    """Bad user input: a missing or empty folder, an unreadable image, a flag out of range."""


def _kind(path: Path) -> str:
    """'folder', 'file', 'loop' (a symbolic link that leads back to itself) or 'missing'."""
    try:
        return "folder" if stat.S_ISDIR(path.stat().st_mode) else "file"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "loop"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):  # ENOTDIR: a file stands where a folder of the path would
            return "missing"
        raise


def _is_loop(path: Path) -> str:
    return f"{path} is a symbolic link that leads back to itself (a loop)"


def existing_folder(path: str | Path, name: str, what_to_give: str) -> Path:
    """`path`, with ~ expanded, when it is a folder; else an InputError saying what it is instead (missing, a file,
    a symbolic-link loop) and `what_to_give`. `name` says what the folder is for ('data folder')."""
    folder = Path(path).expanduser()
    kind = _kind(folder)
    if kind == "missing":
        raise InputError(f"{name} {folder} does not exist: {what_to_give}")
    if kind == "file":
        raise InputError(f"{folder} is a file, not a folder: {what_to_give}")
    if kind == "loop":
        raise InputError(f"{_is_loop(folder)}: {what_to_give}")
    return folder


def folder_to_write(path: str | Path, flag: str) -> Path:
    """`path`, with ~ expanded, when it is a writable folder or one can be made there; else an InputError naming
    `flag` and what stands in the way (a file, a symbolic-link loop, a folder that is not writable)."""
    folder = Path(path).expanduser()
    for candidate in (folder, *folder.parents):
        kind = _kind(candidate)
        if kind == "missing":
            continue
        if kind == "file":
            what = "is a file, not a folder" if candidate == folder else f"is inside {candidate}, which is a file"
            raise InputError(f"{flag} {folder} {what}: give a folder")
        if kind == "loop":
            raise InputError(f"{flag} {folder}: {_is_loop(candidate)}: give another folder")
        if not os.access(candidate, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {folder}: {candidate} is not writable: give a folder you can write to")
        break
    return folder
