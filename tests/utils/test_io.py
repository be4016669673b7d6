"""Atomic writes and output guards: nothing half-written, nothing overwritten by accident."""

from __future__ import annotations

import pytest

from vipseg.errors import OutputError, OutputExistsError
from vipseg.utils.io import atomic_dir, atomic_open, atomic_write_json, ensure_new_output


def test_ensure_new_output_refuses_existing_unless_forced(tmp_path):
    f = tmp_path / "out.json"
    assert ensure_new_output(f) == f
    f.write_text("{}")
    with pytest.raises(OutputExistsError, match="out.json.*already exists.*--force"):
        ensure_new_output(f)
    assert ensure_new_output(f, force=True) == f


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
    target = tmp_path / "bank"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "x.txt").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("x")
    assert (target / "x.txt").read_text() == "x"
    with pytest.raises(OutputExistsError):
        with atomic_dir(target):
            pass
    with atomic_dir(target, force=True) as tmp:
        (tmp / "y.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["y.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]


def test_output_under_a_file_is_a_one_line_output_error(tmp_path):
    blocker = tmp_path / "train.json"
    blocker.write_text("{}")
    with pytest.raises(OutputError) as e:
        with atomic_dir(blocker / "sub"):
            pass
    assert str(e.value) == f"{blocker / 'sub'}: cannot write the output there ({blocker} is a file, not a folder)"
    with pytest.raises(OutputError, match=f"{blocker} is a file, not a folder"):
        atomic_write_json(blocker / "deeper" / "x.json", {})
    assert blocker.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]
