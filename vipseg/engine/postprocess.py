"""Post-processing of one image's final detections: priors and caps applied after TTA and
ensembling, before masks are pasted.

Order (``test.post`` in the config): the ``one_ball`` filter, then the score threshold, then
at most ``max_per_class[label]`` detections per class (the best-scoring ones). Detections are
per image ``boxes`` [K, 4] XYXY (any pixel frame), ``labels`` [K] in 0..C-1, ``scores`` [K]
and any other per-detection tensors (``masks`` [K, 1, M, M], ...), filtered alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from vipseg.errors import ConfigError


@dataclass(frozen=True)
class OneBall:
    """If the best detection of ``label`` scores >= ``min_score``, keep it and every detection
    of ``label`` whose box overlaps it (intersection area > 0); drop the other detections of
    ``label``. Below ``min_score`` nothing is dropped (the reference's VIPriors filter)."""

    label: int
    min_score: float = 0.2


@dataclass(frozen=True)
class PostOptions:
    """``score_thresh``: drop detections scoring below; ``max_per_class``: label -> cap."""

    one_ball: Optional[OneBall] = None
    score_thresh: float = 0.0
    max_per_class: dict[int, int] = field(default_factory=dict)


def post_options(test_cfg: Any, classes: Sequence[str]) -> PostOptions:
    """The config's ``test`` section -> ``PostOptions``; ``ConfigError`` for a class name that
    is not one of ``classes`` (a key is accepted only where it acts)."""
    names = list(classes)

    def label(key: str, name: str) -> int:
        if name not in names:
            raise ConfigError(f"config key '{key}': class {name!r} is not one of "
                              f"dataset.classes {names}")
        return names.index(name)

    post = test_cfg.post
    one_ball = None
    if post.one_ball is not None:
        one_ball = OneBall(label("test.post.one_ball.class_name", post.one_ball.class_name),
                           post.one_ball.min_score)
    caps = {label(f"test.post.max_per_class.{k}", k): int(v)
            for k, v in post.max_per_class.items()}
    return PostOptions(one_ball=one_ball, score_thresh=float(test_cfg.score_thresh),
                       max_per_class=caps)


def one_ball_keep(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
                  rule: OneBall) -> torch.Tensor:
    """Bool [K]: which detections the one-ball rule keeps (see ``OneBall``)."""
    keep = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    balls = (labels == rule.label).nonzero().flatten()
    if len(balls) == 0:
        return keep
    top = balls[scores[balls].argmax()]
    if float(scores[top]) < rule.min_score:
        return keep
    b, t = boxes[balls].float(), boxes[top].float()
    overlap = ((torch.minimum(b[:, 2], t[2]) - torch.maximum(b[:, 0], t[0])).clamp(min=0)
               * (torch.minimum(b[:, 3], t[3]) - torch.maximum(b[:, 1], t[1])).clamp(min=0)) > 0
    keep[balls] = overlap
    keep[top] = True  # a degenerate (zero-area) top box still keeps itself
    return keep


def cap_per_class(labels: torch.Tensor, scores: torch.Tensor,
                  caps: dict[int, int]) -> torch.Tensor:
    """Bool [K]: at most ``caps[label]`` best-scoring detections of each capped label."""
    keep = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    for label, cap in caps.items():
        idx = (labels == label).nonzero().flatten()
        if len(idx) > cap:
            order = scores[idx].argsort(descending=True, stable=True)
            keep[idx[order[cap:]]] = False
    return keep


def postprocess(output: dict[str, torch.Tensor], options: PostOptions) -> dict[str, torch.Tensor]:
    """Apply ``options`` to one image's detections (every per-detection tensor filtered)."""
    boxes, labels, scores = output["boxes"], output["labels"], output["scores"]
    keep = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    if options.one_ball is not None:
        keep &= one_ball_keep(boxes, labels, scores, options.one_ball)
    keep &= scores >= options.score_thresh
    if options.max_per_class:
        idx = keep.nonzero().flatten()
        capped = cap_per_class(labels[idx], scores[idx], options.max_per_class)
        keep[idx[~capped]] = False
    if bool(keep.all()):
        return output
    return {k: (v[keep] if isinstance(v, torch.Tensor) and len(v) == len(keep) else v)
            for k, v in output.items()}

