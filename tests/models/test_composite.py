"""CBNetV2 composite backbones: shapes, zero-initialised composition, both branches trained,
assisting losses in the detector, bad configs, and a tiny composite overfitting 4 images."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers import make_shapes_dataset
from tests.models.backbone_cases import (CHANNELS, STAGED, backbone_cfg, no_downloads,  # noqa: F401
                                         with_backbone)
from vipseg.config.loader import load_config
from vipseg.config.schema import ModelConfig, NeckConfig
from vipseg.errors import ConfigError
from vipseg.models.backbones.composite import CompositeBackbone
from vipseg.models.build import FAMILIES, build_model
from vipseg.models.features import build_backbone, build_features

pytestmark = pytest.mark.usefixtures("no_downloads")
CB_TINY = Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/cb_tiny_cpu.yaml"


@pytest.mark.parametrize("case", STAGED)
def test_shapes_strides_and_modes(case):
    torch.manual_seed(0)
    features = build_features(ModelConfig(backbone=backbone_cfg(case, composite=True),
                                          neck=NeckConfig(channels=32)))
    body = features.body
    assert isinstance(body, CompositeBackbone) and features.aux_weights == (0.5,)
    lead, assist = body.nets[1], body.nets[0]
    assert lead.stem is None and assist.stem is not None  # CBNetV2 deletes the lead's stem
    assert body.out_channels == CHANNELS[case]
    x = torch.rand(2, 3, 96, 160)
    out = features.train()(x)
    assert isinstance(out, list) and len(out) == 2
    sizes = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]  # strides 4..64, rounded up
    for maps in out:
        assert list(maps) == ["0", "1", "2", "3", "pool"]
        assert [tuple(m.shape) for m in maps.values()] == [(2, 32, *s) for s in sizes]
    with torch.no_grad():
        lead_eval = features.eval()(x)
    assert isinstance(lead_eval, dict) and list(lead_eval) == list(out[0])


@pytest.mark.parametrize("case", STAGED)
def test_zero_init_lead_is_its_plain_stages_on_the_assisting_stem(case):
    torch.manual_seed(0)
    body = build_backbone(backbone_cfg(case, composite=True)).eval()
    lead, assist = body.nets[1], body.nets[0]
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        got = body(x)
        stem = assist.stem(x)
        plain_lead = lead.select(lead.run_stages(stem))
        plain_assist = assist.select(assist.run_stages(stem))
    for k in got:
        torch.testing.assert_close(got[k], plain_lead[k], rtol=0, atol=0)
    # Two copies, two sets of weights (ResNet's zero-initialised residuals make stage 1 the
    # identity in both, so compare the last stage).
    assert not torch.allclose(got["3"], plain_assist["3"])
    # Once the projections are non-zero, the assisting features change the lead's output.
    with torch.no_grad():
        for proj in body.compositions[0].proj[0]:
            proj[-1].weight.fill_(1.0)
        changed = body(x)
    assert not torch.allclose(changed["0"], plain_lead["0"])


def test_three_copies_chain(shapes_batch, tiny_cfg):
    tiny_cfg.model.backbone = backbone_cfg("convnext_t", composite=True)
    tiny_cfg.model.backbone.composite.copies = 3
    tiny_cfg.model.backbone.composite.aux_weight = 0.25
    features = build_features(tiny_cfg.model).train()
    assert features.aux_weights == (0.25, 0.25) and len(features.body.compositions) == 2
    assert [n.stem is None for n in features.body.nets] == [False, True, True]
    out = features(torch.rand(1, 3, 96, 160))
    assert len(out) == 3


@pytest.mark.parametrize("case", STAGED)
def test_training_step_reaches_both_branches(tiny_cfg, shapes_batch, case):
    with_backbone(tiny_cfg, case, composite=True)
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    losses = model(*shapes_batch)
    aux = {k for k in losses if k.startswith("aux0_")}
    main = set(losses) - aux
    assert aux and {k.removeprefix("aux0_") for k in aux} == main, sorted(losses)
    assert all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    body = model.backbone.body

    def reached(module) -> bool:
        grads = [p.grad for p in module.parameters()]
        return all(g is not None and torch.isfinite(g).all() for g in grads) and any(
            g.abs().sum() > 0 for g in grads)
    assert reached(body.nets[0].stem) and reached(body.nets[0].stages)  # assisting
    assert reached(body.nets[1].stages)  # lead
    # The zero-initialised norms of the projections learn from step 0.
    gammas = [proj[-1].weight.grad for row in body.compositions[0].proj for proj in row]
    assert all(g is not None for g in gammas) and any(g.abs().sum() > 0 for g in gammas)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gets_assisting_losses(tiny_cfg, shapes_batch, family):
    """Configured, not coded per family: each loss of the family has its ``aux0_`` twin."""
    tiny_cfg.model.family = family
    if family == "htc":
        tiny_cfg.model.semantic.enabled = True
        tiny_cfg.model.mask_iou.enabled = True
    with_backbone(tiny_cfg, "convnext_t", composite=True)
    torch.manual_seed(0)
    losses = build_model(tiny_cfg).train()(*shapes_batch)
    aux = {k.removeprefix("aux0_") for k in losses if k.startswith("aux0_")}
    assert aux and aux == {k for k in losses if not k.startswith("aux0_")}, sorted(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_assisting_losses_are_weighted(tiny_cfg, shapes_batch):
    """The assisting set's losses scale with ``aux_weight`` and the lead's do not change."""
    with_backbone(tiny_cfg, "resnet18", composite=True)
    results = []
    for weight in (0.5, 1.0):
        tiny_cfg.model.backbone.composite.aux_weight = weight
        torch.manual_seed(0)
        model = build_model(tiny_cfg).train()
        torch.manual_seed(1)
        results.append({k: v.item() for k, v in model(*shapes_batch).items()})
    half, full = results
    for k, v in half.items():
        if k.startswith("aux0_"):
            assert v == pytest.approx(0.5 * full[k], rel=1e-5), k
        else:
            assert v == pytest.approx(full[k], rel=1e-5), k


def test_bad_composite_configs(tiny_cfg):
    with_backbone(tiny_cfg, "hrnet_w18_small", composite=True)
    with pytest.raises(ConfigError) as err:
        build_model(tiny_cfg)
    assert str(err.value).startswith("model.backbone.composite: timm model 'hrnet_w18_small' "
                                     "cannot be split into stem + stages")
    assert "\n" not in str(err.value)
    with_backbone(tiny_cfg, "resnet18", composite=True)
    tiny_cfg.model.backbone.norm = "FrozenBN"
    with pytest.raises(ConfigError, match="^model.backbone.composite: the zero-initialised"):
        build_model(tiny_cfg)
    for override, match in (("model.backbone.composite.copies=1", "copies must be in \\[2, 4\\]"),
                            ("model.backbone.composite.aux_weight=1.5",
                             "aux_weight must be in \\[0, 1\\]")):
        with pytest.raises(ConfigError, match=match) as err:
            load_config(CB_TINY, [override])
        assert "\n" not in str(err.value)


def test_tiny_composite_overfits_four_images(tmp_path):
    """cb_tiny_cpu.yaml (two ResNet-18 copies) learns 4 generated images to mask AP >= 0.5
    (80 steps of 2 images, as the plain tiny model's overfit test; seed 0 reached 0.64)."""
    from vipseg.engine.trainer import train
    make_shapes_dataset(tmp_path, "train", n_images=4)
    cfg = load_config(CB_TINY, [
        f"dataset.root={tmp_path}", "dataset.val.ann=train.json", "dataset.val.images=train",
        "augment.scales=[[160,128]]", "dataset.test_scale=[160,128]", "train.epochs=40",
        "train.batch_size=2", "train.val_interval=40", "augment.hflip_prob=0",
        "optimizer.lr=0.002", "schedule.warmup_iters=10", "train.log_interval=20"])
    result = train(cfg, "cb_overfit", work_dir=tmp_path / "runs", device="cpu")
    assert result.val_metrics["segm/AP"] >= 0.5, result.val_metrics
