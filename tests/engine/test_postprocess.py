"""Post-processing: the one-ball prior on hand-made detections, the score threshold, per-class
caps, and the config mapping (class names checked against dataset.classes)."""

from __future__ import annotations

import pytest
import torch

from vipseg.config.loader import load_config
from vipseg.engine.postprocess import OneBall, PostOptions, post_options, postprocess
from vipseg.errors import ConfigError

BALL = 1
RULE = OneBall(label=BALL, min_score=0.2)


def dets(rows):
    """rows of (x0, y0, x1, y1, label, score) -> one image's detections (+ a tag per row)."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": t[:, :4], "labels": t[:, 4].long(), "scores": t[:, 5],
            "masks": torch.arange(len(t), dtype=torch.float32)[:, None, None, None].expand(
                -1, 1, 4, 4)}


def kept(out):
    return out["masks"][:, 0, 0, 0].long().tolist()


def test_one_ball_without_balls_keeps_everything():
    d = dets([(0, 0, 10, 10, 0, 0.9), (20, 20, 30, 30, 0, 0.1)])
    assert kept(postprocess(d, PostOptions(one_ball=RULE))) == [0, 1]


def test_one_ball_with_a_weak_top_ball_keeps_all_balls():
    d = dets([(0, 0, 5, 5, BALL, 0.19), (50, 50, 55, 55, BALL, 0.1), (0, 0, 9, 9, 0, 0.9)])
    assert kept(postprocess(d, PostOptions(one_ball=RULE))) == [0, 1, 2]


def test_one_ball_keeps_the_top_ball_and_those_overlapping_it():
    d = dets([(10, 10, 20, 20, BALL, 0.3),   # overlaps the top ball
              (15, 15, 25, 25, BALL, 0.8),   # top ball
              (25, 25, 30, 30, BALL, 0.7),   # touches its corner only: no overlap
              (60, 60, 70, 70, BALL, 0.5),   # far away
              (60, 60, 70, 70, 0, 0.6)])     # a human: never touched
    assert kept(postprocess(d, PostOptions(one_ball=RULE))) == [0, 1, 4]
    # exactly at the threshold the rule applies
    d["scores"][1] = 0.2
    d["scores"][2:4] = 0.1
    assert kept(postprocess(d, PostOptions(one_ball=RULE))) == [0, 1, 4]


def test_score_threshold_then_per_class_caps():
    d = dets([(0, 0, 1, 1, 0, 0.9), (0, 0, 1, 1, 0, 0.5), (0, 0, 1, 1, 0, 0.7),
              (0, 0, 1, 1, 0, 0.05), (0, 0, 1, 1, BALL, 0.6), (0, 0, 1, 1, BALL, 0.4)])
    out = postprocess(d, PostOptions(score_thresh=0.1, max_per_class={0: 2}))
    assert kept(out) == [0, 2, 4, 5]
    assert kept(postprocess(d, PostOptions())) == [0, 1, 2, 3, 4, 5]


def test_config_mapping_and_unknown_class_names(repo):
    base = repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"
    cfg = load_config(base, ["test.post.one_ball={class_name: ball, min_score: 0.3}",
                             "test.post.max_per_class={human: 30}", "test.score_thresh=0.05"])
    opts = post_options(cfg.test, cfg.dataset.classes)
    assert opts == PostOptions(one_ball=OneBall(1, 0.3), score_thresh=0.05,
                               max_per_class={0: 30})
    assert post_options(load_config(base).test, ["human", "ball"]) == PostOptions()
    cfg = load_config(base, ["test.post.one_ball={class_name: balll}"])
    with pytest.raises(ConfigError, match="test.post.one_ball.class_name.*'balll'"):
        post_options(cfg.test, cfg.dataset.classes)
    with pytest.raises(ConfigError, match=r"test.post.max_per_class.human must be >= 1, got 0"):
        load_config(base, ["test.post.max_per_class={human: 0}"])
    with pytest.raises(ConfigError, match="min_score"):
        load_config(base, ["test.post.one_ball={min_score: 1.5}"])
