"""Atomic file and folder writes, and output guards.

Outputs are written to a temporary file in the destination folder, flushed, then renamed over
the target, so a crash never leaves a half-written file. Tools refuse to replace an existing
output unless ``force`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from vipseg.errors import OutputError, OutputExistsError


def ensure_new_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Raise ``OutputExistsError`` if ``path`` exists and ``force`` is false; return it as Path."""
    p = Path(path)
    if p.exists() and not force:
        kind = "folder" if p.is_dir() else "file"
        raise OutputExistsError(f"{p}: output {kind} already exists (use --force to replace it)")
    return p


@contextmanager
def _preparing(target: Path) -> Iterator[None]:
    """Turn an ``OSError`` while creating ``target``'s folder or temp file into an
    ``OutputError`` naming ``target`` (a file in the way, no write access, ...)."""
    try:
        yield
    except OSError as e:
        blocker = next((a for a in target.parents if a.exists() and not a.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
        raise OutputError(f"{target}: cannot write the output there ({why})") from None


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success it is fsynced and renamed onto ``path``."""
    p = Path(path)
    with _preparing(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON and write it atomically (compact unless ``indent`` is given)."""
    sep = None if indent is not None else (",", ":")
    atomic_write_text(path, json.dumps(obj, indent=indent, separators=sep))


@contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    Refuses an existing ``path`` unless ``force`` (``OutputExistsError``). On failure the
    temporary folder is removed and ``path`` is left as it was.
    """
    target = ensure_new_output(path, force)
    with _preparing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_or_copy(src: Path, dst: Path, copy: bool = False) -> str:
    """Hard-link ``src`` to ``dst`` (copy if linking fails or ``copy``); returns 'link'/'copy'."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass
    shutil.copy2(src, dst)
    return "copy"
