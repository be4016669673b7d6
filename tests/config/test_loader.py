"""Config loading: _base_ merge, overrides, typed validation, dump round trip."""

from __future__ import annotations

import pytest

from vipseg.config import dump_config, load_config
from vipseg.config.loader import config_from_yaml_text
from vipseg.errors import ConfigError

from tests.conftest import REPO


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_merge_then_overrides(tmp_path):
    write(tmp_path / "base" / "a.yaml", "train: {epochs: 3, batch_size: 8}\nmodel: {backbone: {name: resnet18}}\n")
    write(tmp_path / "base" / "b.yaml", "train: {epochs: 5}\n")
    cfg_file = write(tmp_path / "exp.yaml", "_base_: [base/a.yaml, base/b.yaml]\noptimizer: {lr: 0.1}\n")
    cfg = load_config(cfg_file, ["train.seed=7", "dataset.classes=[a,b,c]"])
    assert cfg.train.epochs == 5  # later base wins
    assert cfg.train.batch_size == 8  # deep merge keeps sibling keys
    assert cfg.model.backbone.name == "resnet18"
    assert cfg.optimizer.lr == 0.1
    assert cfg.train.seed == 7
    assert cfg.num_classes == 3


def test_unknown_key_names_file_key_and_closest(tmp_path):
    f = write(tmp_path / "exp.yaml", "train: {epohcs: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert str(f) in msg and "train.epohcs" in msg and "train.epochs" in msg


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path / "b.yaml", "model: {backbone: {nmae: resnet18}}\n")
    f = write(tmp_path / "exp.yaml", "_base_: [b.yaml]\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=str(base)):
        load_config(f)


def test_wrong_type_names_key_expected_and_given(tmp_path):
    f = write(tmp_path / "exp.yaml", "train: {epochs: ten}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "train.epochs" in msg and "expected int" in msg and "got str" in msg


def test_override_type_error_names_command_line(tmp_path):
    f = write(tmp_path / "exp.yaml", "{}\n")
    with pytest.raises(ConfigError, match="command line.*train.amp.*one of"):
        load_config(f, ["train.amp=fp8"])


def test_bad_override_syntax(tmp_path):
    f = write(tmp_path / "exp.yaml", "{}\n")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(f, ["train.epochs"])


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    f = write(tmp_path / "bad.yaml", "train: {epochs: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(f)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "_base_: [b.yaml]\n")
    write(tmp_path / "b.yaml", "_base_: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_no_code_execution_from_yaml(tmp_path):
    f = write(tmp_path / "evil.yaml", "train: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError):
        load_config(f)


def test_dump_reproduces_config(repo):
    cfg = load_config(repo / "configs/exp/mask_rcnn/r50_fpn_gn_vipriors.yaml", ["train.epochs=2"])
    again = config_from_yaml_text(dump_config(cfg))
    assert again == cfg


@pytest.mark.parametrize("path", sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "configs" / "exp").rglob("*.yaml")
))
def test_shipped_experiment_configs_validate(repo, path):
    cfg = load_config(repo / path)
    assert cfg.num_classes == 2


def test_validation_error_names_the_source_of_the_bad_key(tmp_path):
    f = write(tmp_path / "exp.yaml", "augment: {hflip_prob: 0.5}\n")
    with pytest.raises(ConfigError, match=r"^command line: augment.hflip_prob"):
        load_config(f, ["augment.hflip_prob=3"])
    bad = write(tmp_path / "bad.yaml", "augment: {hflip_prob: 3.0}\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: augment.hflip_prob"):
        load_config(bad)
