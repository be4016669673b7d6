"""Checkpoint loading: unreadable or unsafe files are one-line user errors without torch's
advice to load them unsafely."""

from __future__ import annotations

import pytest
import torch

from vipseg.engine.checkpoint import load_checkpoint
from vipseg.errors import DataError


class NotAllowed:
    """A class ``torch.load(weights_only=True)`` refuses to unpickle."""


def _write_garbage(path):
    path.write_bytes(b"garbage bytes, not a checkpoint")


def _write_truncated(path):
    torch.save({"model": {"w": torch.zeros(3)}}, path)
    path.write_bytes(path.read_bytes()[:100])


def _write_unsafe(path):
    torch.save({"model": NotAllowed()}, path)


@pytest.mark.parametrize("write", [_write_garbage, _write_truncated, _write_unsafe])
def test_invalid_checkpoint_is_one_line_without_unsafe_advice(tmp_path, write):
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(DataError) as err:
        load_checkpoint(path)
    message = str(err.value)
    expected = ("not a PyTorch checkpoint file (neither a zip archive nor a pickle"
                if write is _write_garbage else "not a valid vipseg checkpoint (")
    assert message.startswith(f"{path}: {expected}")
    assert message.endswith(")") and "\n" not in message
    assert "weights_only" not in message and "trust" not in message


def test_folder_raw_pickle_and_text_checkpoints_say_what_they_are(tmp_path, recwarn):
    import pickle

    with pytest.raises(DataError, match="is a folder, expected a checkpoint file"):
        load_checkpoint(tmp_path)
    text = tmp_path / "notes.pth"
    text.write_text("hello\n")
    with pytest.raises(DataError, match="not a PyTorch checkpoint file"):
        load_checkpoint(text)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"model": {}}, protocol=4))
    with pytest.raises(DataError, match="not a valid vipseg checkpoint"):
        load_checkpoint(raw)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]  # no torch warning


def test_missing_and_model_less_checkpoints(tmp_path):
    with pytest.raises(DataError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pth")
    torch.save({"epoch": 1}, tmp_path / "x.pth")
    with pytest.raises(DataError, match="no 'model' entry"):
        load_checkpoint(tmp_path / "x.pth")
