"""Output paths, checked before any work: a command that would fail to write its result fails at once instead.

Library functions call these too (not only the command line), so the API refuses the same outputs in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagexplore.errors import UserError


def _first_existing_parent(p: Path) -> Path | None:
    return next((q for q in p.parents if q.exists()), None)


def check_out_dir(path, flag: str = "--out") -> Path:
    """An output folder, checked before any work: it may exist (as a folder) or not yet; a file is refused."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file, not a folder; give a folder (it is created if missing)")
    parent = _first_existing_parent(p)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {p}: {parent} is a file, not a folder")
    return p


def check_out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A file to write: not a folder, and its parent (created if missing) not a file."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p} is a folder; give a file name")
    parent = _first_existing_parent(p)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {p}: {parent} is a file, not a folder")
    return p
