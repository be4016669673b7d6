"""Mask R-CNN contract: training losses, evaluation outputs, no resizing, overfitting a batch."""

from __future__ import annotations

import math

import pytest
import torch

from vipseg.errors import ConfigError
from vipseg.models.build import build_model


def test_train_losses_finite(tiny_cfg, shapes_batch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    images, targets = shapes_batch
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                           "loss_rpn_box_reg"}
    assert all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_train_accepts_image_without_objects(tiny_cfg, shapes_batch):
    images, targets = shapes_batch
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 128, 160, dtype=torch.bool)}
    losses = build_model(tiny_cfg).train()(images[:1] + [torch.zeros(3, 128, 160)],
                                           targets[:1] + [empty])
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_eval_output_contract(tiny_cfg, shapes_batch):
    tiny_cfg.model.roi_heads.score_thresh = 0.0
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    images, _ = shapes_batch
    # A float image of another size (not a multiple of 32) in the same batch.
    odd = torch.rand(3, 75, 230) * 255
    with torch.no_grad():
        out = model([images[0], odd])
    assert len(out) == 2
    for det, (h, w) in zip(out, [(128, 160), (75, 230)]):
        k = len(det["boxes"])
        assert 0 < k <= tiny_cfg.model.roi_heads.detections_per_img
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,)
        assert det["labels"].dtype == torch.int64
        assert det["labels"].min() >= 0 and det["labels"].max() < tiny_cfg.num_classes
        assert det["masks"].shape == (k, 1, 28, 28)
        assert det["masks"].min() >= 0 and det["masks"].max() <= 1
        # Boxes are in the input image's pixels: no resize happened, nothing beyond the canvas.
        boxes = det["boxes"]
        assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0
        assert boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
    # The wide image gets boxes reaching past the other image's width (no shared canvas).
    assert out[1]["boxes"][:, 2].max() > 160


def test_no_resize_keeps_input_size(tiny_cfg):
    model = build_model(tiny_cfg).eval()
    batch, _ = model.transform([torch.zeros(3, 75, 230, dtype=torch.uint8),
                                torch.zeros(3, 128, 160, dtype=torch.uint8)])
    assert batch.image_sizes == [(75, 230), (128, 160)]
    assert batch.tensors.shape == (2, 3, 128, 256)  # padded to multiples of 32
    mean = torch.tensor(tiny_cfg.dataset.mean) / torch.tensor(tiny_cfg.dataset.std)
    assert torch.allclose(batch.tensors[0, :, 0, 0], -mean)


def test_overfits_one_batch(tiny_cfg, shapes_batch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    images, targets = shapes_batch
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert sum(history[-3:]) / 3 < 0.4 * sum(history[:3]) / 3, history


def test_unknown_family_and_anchor_mismatch(tiny_cfg):
    tiny_cfg.model.rpn.anchor_sizes = [16, 32]
    with pytest.raises(ConfigError, match="anchor_sizes has 2 sizes but the FPN has 5 levels"):
        build_model(tiny_cfg)
    tiny_cfg.model.family = "cascade"
    with pytest.raises(ConfigError, match="model.family 'cascade'"):
        build_model(tiny_cfg)


def test_stages_equal_forward(tiny_cfg, shapes_batch):
    """``detect`` + ``predict_masks`` are what ``forward`` runs; masks for given boxes match."""
    tiny_cfg.model.roi_heads.score_thresh = 0.0
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    images, _ = shapes_batch
    with torch.no_grad():
        full = model(images)
        feats = model.extract_features(images)
        assert feats.image_sizes == [tuple(im.shape[-2:]) for im in images]
        dets = model.detect(feats)
        given = model.predict_masks(feats, [d["boxes"] for d in full], [d["labels"] for d in full])
    assert sum(len(d["boxes"]) for d in full) > 0
    for f, d, g in zip(full, dets, given):
        torch.testing.assert_close(f["boxes"], d["boxes"])
        torch.testing.assert_close(f["scores"], d["scores"])
        assert torch.equal(f["labels"], d["labels"])
        torch.testing.assert_close(f["masks"], g["masks"])
