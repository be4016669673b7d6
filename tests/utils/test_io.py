"""Atomic writes and output guards: nothing half-written, nothing overwritten by accident,
no input ever replaced, permissions as an ordinary write gives them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from vipseg.errors import OutputError, OutputExistsError
from vipseg.utils.io import (MARKER, atomic_dir, atomic_open, atomic_write_json,
                             ensure_new_output, read_marker, remove_stale_temps)


def test_ensure_new_output_refuses_existing_unless_forced(tmp_path):
    f = tmp_path / "out.json"
    assert ensure_new_output(f) == f
    f.write_text("{}")
    with pytest.raises(OutputExistsError, match="out.json.*already exists.*--force"):
        ensure_new_output(f)
    assert ensure_new_output(f, force=True) == f


def test_an_output_of_the_other_kind_is_refused_even_with_force(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder, expected a file"):
        ensure_new_output(tmp_path / "d", force=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, expected a folder"):
        ensure_new_output(tmp_path / "f", force=True, folder=True, command="c")


@pytest.mark.parametrize("relation", ["is", "contains", "lies inside"])
def test_an_output_that_is_holds_or_lies_in_an_input_is_refused_with_force(tmp_path, relation):
    root = tmp_path / "root"
    (root / "val").mkdir(parents=True)
    (root / "val.json").write_text("{}")
    out = {"is": root / "val", "contains": root, "lies inside": root / "val" / "bank"}[relation]
    with pytest.raises(OutputError, match=f"output {relation} the input"):
        ensure_new_output(out, force=True, folder=True, inputs=[root / "val.json", root / "val"],
                          command="data extract-objects")
    with pytest.raises(OutputError, match="output is the input"):
        ensure_new_output(root / "val.json", force=True, inputs=[root / "val.json"])


def test_force_replaces_only_a_folder_with_the_same_commands_marker(tmp_path):
    target = tmp_path / "bank"
    target.mkdir()
    (target / "precious.txt").write_text("mine")
    with pytest.raises(OutputError, match="replaces only a folder written by `vipseg data demo`"):
        with atomic_dir(target, force=True, command="data demo"):
            pass
    assert (target / "precious.txt").read_text() == "mine"
    (target / "precious.txt").unlink()  # an empty folder may be replaced
    with atomic_dir(target, force=True, command="data demo") as tmp:
        (tmp / "a.txt").write_text("a")
    assert read_marker(target) == "data demo"
    with pytest.raises(OutputError, match="data render"):  # another command's folder
        with atomic_dir(target, force=True, command="data render"):
            pass
    with atomic_dir(target, force=True, command="data demo") as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.txt"]


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    f = tmp_path / "a.json"
    atomic_write_json(f, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(f, "w") as out:
            out.write("partial")
            raise RuntimeError("crash mid-write")
    assert f.read_text() == '{"v":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "new" / "bank"
    with pytest.raises(RuntimeError):
        with atomic_dir(target, command="t") as tmp:
            (tmp / "x.txt").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it created
    with atomic_dir(target, command="t") as tmp:
        (tmp / "x.txt").write_text("x")
    assert (target / "x.txt").read_text() == "x"
    with pytest.raises(OutputExistsError):
        with atomic_dir(target, command="t"):
            pass
    assert sorted(p.name for p in target.parent.iterdir()) == ["bank"]


def test_output_under_a_file_is_a_one_line_output_error(tmp_path):
    blocker = tmp_path / "train.json"
    blocker.write_text("{}")
    with pytest.raises(OutputError) as e:
        with atomic_dir(blocker / "sub", command="t"):
            pass
    assert str(e.value) == f"{blocker / 'sub'}: cannot write the output there ({blocker} is a file, not a folder)"
    with pytest.raises(OutputError, match=f"{blocker} is a file, not a folder"):
        atomic_write_json(blocker / "deeper" / "x.json", {})
    assert blocker.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temps_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".last.pth.{dead}.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / f".best.pth.{dead}.abcd1234.tmp"
    other.write_bytes(b"x")
    live = tmp_path / f".last.pth.{os.getpid()}.zzzz9999.tmp"  # this process: still writing
    live.write_bytes(b"x")
    foreign = tmp_path / ".last.pth.notvipseg.tmp"
    foreign.write_bytes(b"x")
    atomic_write_json(tmp_path / "last.pth", {})
    assert not stale.exists() and other.exists() and live.exists() and foreign.exists()
    assert remove_stale_temps(tmp_path) == [other]


def test_atomic_outputs_get_the_permissions_of_an_ordinary_write(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "f.json", {})
        with atomic_dir(tmp_path / "d", command="t") as tmp:
            (tmp / "x").write_text("x")
        (tmp_path / "plain").write_text("x")
        assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
        assert stat.S_IMODE((tmp_path / "d" / MARKER).stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {})
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
