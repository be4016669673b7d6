"""``vipseg`` top level: overrides after options, unknown arguments with the command's usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from vipseg.cli.main import main

TINY = str(Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml")


def test_overrides_after_options_are_applied(tmp_path, capsys):
    # The override reaches the config loader (which names the bad key) before the checkpoint
    # is opened.
    code = main(["test", TINY, str(tmp_path / "none.pth"), "--valid",
                 "dataset.test_scale=[160,128]", "train.epochz=3"])
    err = capsys.readouterr().err
    assert code == 2 and "train.epochz" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, usage", [
    (["test", "C", "K", "--valid", "dataset.test_scale=[160,128]", "--bogus"], "vipseg test"),
    (["data", "check", "ann.json", "--bogus"], "vipseg data check"),
])
def test_unknown_arguments_are_reported_with_the_command_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"usage: {usage} ")
    assert err.strip().splitlines()[-1] == f"error: {usage}: unrecognized arguments: --bogus"
