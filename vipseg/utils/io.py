"""Atomic file and folder writes, and output guards.

Outputs are written to a temporary file (or folder) beside the target, flushed, then renamed
over it, so a crash never leaves a half-written output: it is there complete or not at all.
Temporary names are ``.<name>.<pid>.<random>.tmp``; one left by a killed process (whose pid no
longer runs) is removed by the next write of the same name, or by :func:`remove_stale_temps`.
Files and folders get the permissions an ordinary write would give (``0o666`` / ``0o777``
less the umask), not the ``0600`` / ``0700`` of ``mkstemp`` / ``mkdtemp``.

:func:`ensure_new_output` is the one check every command runs on each output before any work:
an existing output is refused unless ``force``; an output that is an input, lies inside an input
folder or (a folder) contains an input is refused even with ``force``; a folder is replaced only when it is empty or holds the
:data:`MARKER` of an earlier run of the same command (so ``--force`` never deletes what vipseg
did not write).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from vipseg.errors import OutputError, OutputExistsError

#: Written into every folder :func:`atomic_dir` creates: ``{"command": "<command>"}``.
MARKER = ".vipseg-output.json"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.(?:tmp|old)$")

PathLike = str | os.PathLike


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _resolved(p: PathLike) -> Path:
    return Path(p).expanduser().resolve()


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_writable(p: PathLike) -> None:
    """``OutputError`` if the nearest existing ancestor of ``p`` is a file or not writable
    (so ``p`` could not be created there)."""
    p = Path(p)
    for a in p.parents:
        if a.exists():
            if not a.is_dir():
                raise OutputError(f"{p}: cannot write the output there ({a} is a file, not a folder)")
            if not os.access(a, os.W_OK | os.X_OK):
                raise OutputError(f"{p}: cannot write the output there ({a} is not writable)")
            return


def read_marker(folder: PathLike) -> str | None:
    """The command recorded in ``folder``'s :data:`MARKER`, or None if there is none."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) else None


def ensure_new_output(path: PathLike, force: bool = False, *, folder: bool = False,
                      inputs: Iterable[PathLike | None] = (), command: str | None = None) -> Path:
    """Check the output ``path`` (a file, or a folder when ``folder``) before any work is done.

    Raises ``OutputError`` if it cannot be written (a file in the way, no write access), if it
    exists as the other kind, if it is one of ``inputs`` or lies inside an input folder (or,
    for a folder, contains an input), or if it is a non-empty folder without the marker of ``command``; raises
    ``OutputExistsError`` if it exists and ``force`` is false. Returns ``path`` as a Path.
    """
    p = Path(path)
    check_writable(p)
    here = _resolved(p)
    for item in inputs:
        if item is None:
            continue
        src = _resolved(item)
        what = ("is" if here == src else "lies inside" if _inside(here, src)
                else "contains" if folder and _inside(src, here) else None)
        if what:
            raise OutputError(f"{p}: the output {what} the input {item}; choose another output "
                              "path (nothing was written)")
    if not (p.exists() or p.is_symlink()):
        return p
    kind = "folder" if p.is_dir() else "file"
    if folder != p.is_dir():
        raise OutputError(f"{p}: is a {kind}, expected a {'folder' if folder else 'file'} here")
    if not force:
        raise OutputExistsError(f"{p}: output {kind} already exists (use --force to replace it)")
    if folder and any(p.iterdir()) and read_marker(p) != command:
        raise OutputError(f"{p}: --force replaces only a folder written by `vipseg {command}` "
                          f"(it holds {MARKER}); this one is not: remove it yourself or choose "
                          "another output")
    return p


def remove_stale_temps(folder: PathLike, name: str | None = None) -> list[Path]:
    """Remove vipseg's temporary files and folders in ``folder`` (of target ``name``, or all)
    whose writing process no longer runs; returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _new_parents(target: Path) -> Iterator[None]:
    """Create ``target``'s missing parent folders (umask applied); on failure remove those
    that are still empty, and turn an ``OSError`` into an ``OutputError`` naming ``target``."""
    missing = [a for a in [target.parent, *target.parent.parents] if not a.exists()]
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            check_writable(target)
            raise OutputError(f"{target}: cannot write the output there "
                              f"({e.strerror or e})") from None
        yield
    except BaseException:
        for a in missing:  # deepest first
            try:
                a.rmdir()
            except OSError:
                break
        raise


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success it is fsynced and renamed onto ``path``
    with the permissions of an ordinary write."""
    p = Path(path)
    with _new_parents(p):
        remove_stale_temps(p.parent, p.name)
        try:
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=".tmp", dir=p.parent)
        except OSError as e:
            raise OutputError(f"{p}: cannot write the output there ({e.strerror or e})") from None
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON and write it atomically (compact unless ``indent`` is given)."""
    sep = None if indent is not None else (",", ":")
    atomic_write_text(path, json.dumps(obj, indent=indent, separators=sep))


@contextmanager
def atomic_dir(path: PathLike, force: bool = False, *, command: str,
               inputs: Iterable[PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    ``path`` is checked with :func:`ensure_new_output` (``command`` names the vipseg command
    whose :data:`MARKER` the folder gets, so a later ``--force`` run may replace it). On failure
    the temporary folder (and any parent folder created for it) is removed and ``path`` is left
    as it was.
    """
    target = ensure_new_output(path, force, folder=True, inputs=inputs, command=command)
    with _new_parents(target):
        remove_stale_temps(target.parent, target.name)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp",
                                        dir=target.parent))
        except OSError as e:
            raise OutputError(f"{target}: cannot write the output there "
                              f"({e.strerror or e})") from None
        try:
            os.chmod(tmp, 0o777 & ~current_umask())
            yield tmp
            atomic_write_json(tmp / MARKER, {"command": command})
            if target.exists() or target.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".old",
                                            dir=target.parent))
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
