"""Typed config schema: every key a config file may hold, with its default.

The tree mirrors the YAML: ``dataset``, ``model``, ``augment``, ``optimizer``, ``schedule``,
``train``, ``test``, ``swa`` (the second stage, ``vipseg swa``). Image sizes are
``[width, height]`` in pixels; colours are per-channel RGB
values in 0..255. Classes never see this object: each subsystem's ``build_*(cfg)`` maps its
section onto plain keyword arguments.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from vipseg.config.duration import parse_duration
from vipseg.config.ranges import check_ranges
from vipseg.errors import ConfigError

Norm = Literal["BN", "SyncBN", "GN", "FrozenBN", "none"]


# --------------------------------------------------------------------------------------- dataset
@dataclass
class SplitConfig:
    """One split: a COCO JSON and its image folder, both relative to ``dataset.root``."""

    ann: str = ""
    images: str = ""


@dataclass
class DatasetConfig:
    root: str = "data"
    classes: list[str] = field(default_factory=lambda: ["human", "ball"])
    train: SplitConfig = field(default_factory=lambda: SplitConfig("train.json", "train"))
    val: SplitConfig = field(default_factory=lambda: SplitConfig("val.json", "val"))
    test: SplitConfig = field(default_factory=lambda: SplitConfig("test.json", "test"))
    mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    # Evaluation resize: fit the image inside [long, short] keeping the aspect ratio.
    test_scale: list[int] = field(default_factory=lambda: [1333, 800])
    # Training split only (mmdetection's filter_cfg): skip images without annotations of the
    # classes, and images whose shorter side is below min_size pixels (0: keep all).
    filter_empty: bool = False
    min_size: int = 0
    # "ram": decode every training image once into memory (refused when it does not fit).
    cache: Literal["none", "ram"] = "none"

    def validate(self) -> None:
        if not self.classes:
            raise ConfigError("dataset.classes must name at least one class")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("dataset.mean and dataset.std need 3 values (R, G, B)")
        if len(self.test_scale) != 2:
            raise ConfigError("dataset.test_scale must be [long, short]")
        check_ranges(self, prefix="dataset")


# ----------------------------------------------------------------------------------------- model
@dataclass
class CompositeConfig:
    """CBNetV2 composite backbone (docs/backbones.md): ``copies`` chained copies of the
    backbone (``copies - 1`` assisting, the last one leads); each assisting copy's RPN and RoI
    losses are added with weight ``aux_weight`` (lead: 1)."""

    copies: int = 2
    aux_weight: float = 0.5


@dataclass
class BackboneConfig:
    """``name``: resnet18/34/50/101 (torchvision) or ``timm:<model>`` (any features_only model).

    ``out_indices``: stages by stride, ``i`` -> 1 / 2^(i+1) (1..4 = 1/4..1/32), for both kinds.
    For timm models ``norm`` replaces their BatchNorm layers only (LayerNorm stays) and
    ``kwargs`` are extra ``timm.create_model`` arguments; ``drop_path_rate`` is timm's only.
    ``checkpointing``: activation checkpointing per stage in training (ResNet, timm Swin /
    ConvNeXt / ConvNeXt-V2, composites). ``composite`` set (even ``{}``): a CBNetV2 composite
    of the backbone (ResNet, Swin, ConvNeXt, ConvNeXt-V2), its projections normed by ``norm``.
    """

    name: str = "resnet50"
    norm: Norm = "GN"
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    drop_path_rate: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpointing: bool = False
    composite: Optional[CompositeConfig] = None

    def validate(self) -> None:
        check_ranges(self, prefix="model.backbone")


@dataclass
class NeckConfig:
    """``type``: ``fpn`` (any backbone) or ``hrfpn`` (HRNet's neck: backbones with parallel
    multi-resolution branches, i.e. timm HRNet). Both give 5 levels, strides 4..64."""

    type: Literal["fpn", "hrfpn"] = "fpn"
    channels: int = 256
    norm: Norm = "none"

    def validate(self) -> None:
        check_ranges(self, prefix="model.neck")


@dataclass
class RPNConfig:
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5


@dataclass
class SeesawConfig:
    """Seesaw loss with a normalised-linear (cosine) classifier of ``temperature``."""

    p: float = 0.8  # mitigation exponent
    q: float = 2.0  # compensation exponent
    temperature: float = 20.0


@dataclass
class RoIHeadsConfig:
    """Sampling, box and mask heads, losses and test-time filtering of the RoI heads.

    Box head: ``box_head_convs`` 3x3 convs of ``box_head_channels`` then ``box_head_fcs`` FCs of
    ``representation_size`` (shared 2FC: 0 / 2; 4conv1fc: 4 / 1; 2 conv + 2 FC: 2 / 2). ``norm``
    and ``ws`` (weight-standardised convs) apply to the convs of the box and mask heads.
    ``seesaw`` set: Seesaw loss + cosine classifier instead of softmax cross-entropy.
    ``fg_iou_thresh`` / ``bg_iou_thresh`` are Mask R-CNN's; cascades use ``model.cascade``.
    ``mask_pixel_channels`` > 0: the mask head also convolves the RoI's crop of the input
    image at 28x28 with that many channels (fine edges below the pyramid's stride 4);
    ``box_pixel_channels`` > 0: the box head(s) likewise, on a 14x14 crop of the RoI grown 1.5x.
    ``aligned``: half-pixel-correct RoIAlign for the pooled features and the mask targets
    (detectron2's ROIAlignV2); ``false`` samples as torchvision's Mask R-CNN does.
    """

    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    box_head_convs: int = 4
    box_head_channels: int = 256
    box_head_fcs: int = 1
    representation_size: int = 1024
    mask_head_convs: int = 4
    mask_head_channels: int = 256
    mask_pixel_channels: int = 0
    box_pixel_channels: int = 0
    norm: Norm = "GN"
    ws: bool = False
    box_loss: Literal["smooth_l1", "l1", "giou"] = "smooth_l1"
    box_loss_weight: float = 1.0
    seesaw: Optional[SeesawConfig] = None
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    aligned: bool = True


@dataclass
class CascadeConfig:
    """Box stages of ``cascade_mask_rcnn`` and ``htc``: one entry per stage in each list."""

    iou_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7])
    stage_loss_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25])
    bbox_reg_weights: list[list[float]] = field(default_factory=lambda: [
        [10.0, 10.0, 5.0, 5.0], [20.0, 20.0, 10.0, 10.0], [30.0, 30.0, 15.0, 15.0]])


@dataclass
class MaskIoUConfig:
    """Mask Scoring R-CNN's mask-IoU head (one per mask stage); score = box score x IoU."""

    enabled: bool = False
    num_convs: int = 4
    conv_channels: int = 256
    fc_dim: int = 1024
    loss_weight: float = 0.5


@dataclass
class SemanticConfig:
    """HTC's semantic branch at pyramid level ``fusion_level`` (0 = finest), fused into the
    RoI features; target derived from the instance masks."""

    enabled: bool = False
    fusion_level: int = 1
    num_convs: int = 4
    loss_weight: float = 0.2


Family = Literal["mask_rcnn", "cascade_mask_rcnn", "htc"]
FAMILIES: tuple[str, ...] = typing.get_args(Family)
CASCADE_FAMILIES = ("cascade_mask_rcnn", "htc")


def _changed_fields(section: Any, exclude: str = "") -> list[str]:
    """Names of ``section``'s fields that differ from its dataclass defaults."""
    default = type(section)()
    return [f.name for f in dataclasses.fields(section)
            if f.name != exclude and getattr(section, f.name) != getattr(default, f.name)]


@dataclass
class ModelConfig:
    """``family``: mask_rcnn, cascade_mask_rcnn or htc (docs/models.md). ``cascade`` (stages)
    only for the cascades (null: the 3-stage default), ``semantic`` only for htc."""

    family: Family = "mask_rcnn"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    cascade: Optional[CascadeConfig] = None
    mask_iou: MaskIoUConfig = field(default_factory=MaskIoUConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)

    def validate(self) -> None:
        """Family, the RoI-head sections, their cross-field rules and every key's range
        (:mod:`vipseg.config.ranges`); one-line errors naming the key."""
        if self.family not in FAMILIES:
            raise ConfigError(f"model.family {self.family!r} is not available; expected one of "
                              f"{', '.join(FAMILIES)}")
        cascade = self.family in CASCADE_FAMILIES
        if self.cascade is not None and not cascade:
            raise ConfigError(f"model.cascade: family {self.family} has one box stage; stages "
                              f"exist only in {' and '.join(CASCADE_FAMILIES)}")
        if cascade and (self.roi_heads.fg_iou_thresh, self.roi_heads.bg_iou_thresh) != (0.5, 0.5):
            raise ConfigError("model.roi_heads.fg_iou_thresh / bg_iou_thresh: cascades take "
                              "their IoUs from model.cascade.iou_thresholds")
        if self.semantic.enabled and self.family != "htc":
            raise ConfigError(f"model.semantic.enabled: the semantic branch is HTC's, not "
                              f"{self.family}'s")
        for name, section in (("mask_iou", self.mask_iou), ("semantic", self.semantic)):
            unused = _changed_fields(section, exclude="enabled")
            if unused and not section.enabled:
                raise ConfigError(f"model.{name}.{unused[0]} acts only with "
                                  f"model.{name}.enabled: true")
        r = self.roi_heads
        if r.box_head_convs == 0 and "box_head_channels" in _changed_fields(r):
            raise ConfigError("model.roi_heads.box_head_channels acts only with box_head_convs > 0")
        check_ranges(self, prefix="model")
        if r.bg_iou_thresh > r.fg_iou_thresh:
            raise ConfigError(f"model.roi_heads.bg_iou_thresh ({r.bg_iou_thresh:g}) must be <= "
                              f"fg_iou_thresh ({r.fg_iou_thresh:g})")
        if r.box_head_convs + r.box_head_fcs == 0:
            raise ConfigError("model.roi_heads.box_head_fcs: a box head with 0 convs needs >= 1 FC")
        if self.cascade is not None:
            self._validate_cascade(self.cascade)
        levels = len(self.backbone.out_indices)
        if not self.semantic.fusion_level < levels:
            raise ConfigError(f"model.semantic.fusion_level must be in [0, {levels - 1}] (one of "
                              f"the {levels} pyramid levels), got {self.semantic.fusion_level}")

    @staticmethod
    def _validate_cascade(c: CascadeConfig) -> None:
        """The stage lists' lengths (the values' ranges are in :mod:`vipseg.config.ranges`)."""
        n = len(c.iou_thresholds)
        if n == 0:
            raise ConfigError("model.cascade.iou_thresholds must list at least one stage")
        for name in ("stage_loss_weights", "bbox_reg_weights"):
            if len(getattr(c, name)) != n:
                raise ConfigError(f"model.cascade.{name} has {len(getattr(c, name))} entries but "
                                  f"iou_thresholds has {n} stages (one per stage)")
        if any(len(w) != 4 for w in c.bbox_reg_weights):
            raise ConfigError(f"model.cascade.bbox_reg_weights: each stage needs 4 weights "
                              f"(wx, wy, ww, wh), got {c.bbox_reg_weights}")


# --------------------------------------------------------------------------------------- augment
def _check_between(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be in [{low:g}, {high:g}], got {value:g}")


def _check_range(key: str, value: list[float], minimum: float, strict: bool = False) -> None:
    """``value`` is [low, high] with ``minimum`` <= low (< when ``strict``) <= high."""
    if len(value) != 2 or value[0] > value[1] or value[0] < minimum or (strict and value[0] == minimum):
        bound = f"{minimum:g} {'<' if strict else '<='} low <= high"
        raise ConfigError(f"{key} must be [low, high] with {bound}, got {value}")


@dataclass
class PhotometricConfig:
    prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    saturation_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    hue_delta: float = 18.0
    channel_swap_prob: float = 0.0
    # True: distort the source pixels before the geometric stages (mmdetection's order, the
    # fill colour stays undistorted); False: distort the final crop (fewer pixels).
    before_geometric: bool = False

    def validate(self) -> None:
        key = "augment.photometric"
        _check_between(f"{key}.prob", self.prob, 0, 1)
        _check_between(f"{key}.channel_swap_prob", self.channel_swap_prob, 0, 1)
        _check_between(f"{key}.brightness_delta", self.brightness_delta, 0, 255)
        _check_between(f"{key}.hue_delta", self.hue_delta, 0, 180)
        _check_range(f"{key}.contrast_range", self.contrast_range, 0)
        _check_range(f"{key}.saturation_range", self.saturation_range, 0)


@dataclass
class GeometricConfig:
    shear_max_degrees: float = 0.0
    shear_prob: float = 0.0
    translate_max_fraction: float = 0.0
    translate_prob: float = 0.0

    def validate(self) -> None:
        key = "augment.geometric"
        _check_between(f"{key}.shear_prob", self.shear_prob, 0, 1)
        _check_between(f"{key}.translate_prob", self.translate_prob, 0, 1)
        _check_between(f"{key}.translate_max_fraction", self.translate_max_fraction, 0, 1)
        if not 0 <= self.shear_max_degrees < 90:
            raise ConfigError(f"{key}.shear_max_degrees must be in [0, 90), "
                              f"got {self.shear_max_degrees:g}")


@dataclass
class CopyPasteConfig:
    """Paste objects from a ``vipseg data extract-objects`` bank (``bank`` relative to root)."""

    enabled: bool = False
    bank: str = ""
    max_per_class: dict[str, int] = field(default_factory=lambda: {"human": 20, "ball": 40})
    scale_jitter: list[float] = field(default_factory=lambda: [0.8, 1.2])
    court_aware: bool = True
    occlusion_prob: float = 0.0
    ball_at_hand_prob: float = 0.0
    min_visible_fraction: float = 0.1
    min_visible_area: int = 16
    brightness_delta: float = 16.0  # per-object light photometric change
    contrast_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    ball_class: str = "ball"  # class placed at a pasted player's hand (ball_at_hand_prob)
    prob: float = 1.0  # chance that a sample gets pastes at all
    # A drawn ball that is followed (in paste order) by a human is centred inside that
    # human's box, as the reference does (ball_class names the ball).
    ball_in_next_human: bool = False
    # Court side of an image: "id_suffix" reads image ids ending in _0 / _1, "camcourt" file
    # names holding camcourt1 / camcourt2 (side 0 / 1); "none": no side. Anchors of an image
    # with a side are drawn inside side_boxes[side] ([x0, y0, x1, y1], fractions of the image).
    side_rule: Literal["none", "id_suffix", "camcourt"] = "none"
    side_boxes: list[list[float]] = field(default_factory=lambda: [[0.0, 0.0, 0.5, 1.0],
                                                                   [0.5, 0.0, 1.0, 1.0]])

    def validate(self) -> None:
        key = "augment.copy_paste"
        _check_between(f"{key}.prob", self.prob, 0, 1)
        if len(self.side_boxes) != 2 or any(
                len(b) != 4 or not 0 <= b[0] < b[2] <= 1 or not 0 <= b[1] < b[3] <= 1
                for b in self.side_boxes):
            raise ConfigError(f"{key}.side_boxes must be 2 boxes [x0, y0, x1, y1] with "
                              f"0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {self.side_boxes}")
        _check_range(f"{key}.scale_jitter", self.scale_jitter, 0, strict=True)
        _check_range(f"{key}.contrast_range", self.contrast_range, 0)
        _check_between(f"{key}.brightness_delta", self.brightness_delta, 0, 255)
        _check_between(f"{key}.occlusion_prob", self.occlusion_prob, 0, 1)
        _check_between(f"{key}.ball_at_hand_prob", self.ball_at_hand_prob, 0, 1)
        _check_between(f"{key}.min_visible_fraction", self.min_visible_fraction, 0, 1)
        negative = {k: v for k, v in self.max_per_class.items() if v < 0}
        if self.min_visible_area < 0 or negative:
            raise ConfigError(f"{key}: min_visible_area and max_per_class counts must be >= 0, "
                              f"got {self.min_visible_area} and {negative}")


@dataclass
class AugmentConfig:
    """Training-time pipeline. Scales are [long, short] targets, one drawn per sample."""

    scales: list[list[int]] = field(default_factory=lambda: [[1333, 800]])
    hflip_prob: float = 0.5
    photometric: Optional[PhotometricConfig] = None
    geometric: GeometricConfig = field(default_factory=GeometricConfig)
    crop_size: Optional[list[int]] = None  # [width, height]
    allow_empty_crop: bool = True
    min_box_size: float = 2.0
    copy_paste: CopyPasteConfig = field(default_factory=CopyPasteConfig)
    # RGB of shear/translate borders and padding; null: dataset.mean (the colour the model
    # normalises to zero).
    fill: Optional[list[float]] = None

    def validate(self) -> None:
        """Check every key (nested sections included, so configs built in code are checked too)."""
        if not self.scales or any(len(s) != 2 or min(s) < 1 for s in self.scales):
            raise ConfigError(f"augment.scales must be a non-empty list of [long, short] positive "
                              f"sizes, got {self.scales}")
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) < 1):
            raise ConfigError(f"augment.crop_size must be [width, height] of positive sizes, "
                              f"got {self.crop_size}")
        if self.fill is not None and (len(self.fill) != 3 or not all(0 <= v <= 255 for v in self.fill)):
            raise ConfigError(f"augment.fill must be 3 values (R, G, B) in [0, 255], got {self.fill}")
        _check_between("augment.hflip_prob", self.hflip_prob, 0, 1)
        if self.min_box_size < 0:
            raise ConfigError(f"augment.min_box_size must be >= 0, got {self.min_box_size:g}")
        for section in (self.photometric, self.geometric, self.copy_paste):
            if section is not None:
                section.validate()


# ------------------------------------------------------------------------------ optim / schedule
@dataclass
class OptimizerConfig:
    type: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    norm_bias_decay: bool = False  # False: no weight decay on norm weights and biases


@dataclass
class ScheduleConfig:
    """Linear warm-up over ``warmup_iters`` iterations, then a per-epoch step or cosine decay,
    a constant rate, or ``cyclic``: within every epoch from ``lr`` down to
    ``lr × min_lr_ratio``."""

    policy: Literal["step", "cosine", "constant", "cyclic"] = "step"
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    steps: list[int] = field(default_factory=lambda: [8, 11])  # epochs at which lr *= gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass
class EmaConfig:
    """Exponential moving average of the weights during training (timm ``ModelEmaV3``): after
    every step ``ema = decay × ema + (1 - decay) × weights``; ``warmup``: timm's ramp
    ``decay_t = min(decay, 1 - (1 + t)^(-2/3))`` over the first iterations."""

    enabled: bool = False
    decay: float = 0.9998
    warmup: bool = True


@dataclass
class TrainConfig:
    epochs: int = 12
    max_iters: Optional[int] = None  # stop early after this many iterations (tests, smoke runs)
    batch_size: int = 2  # per process
    num_workers: int = 2
    amp: Literal["none", "bf16", "fp16"] = "none"
    clip_grad: Optional[float] = None
    val_interval: int = 1  # epochs; 0 disables validation
    checkpoint_interval: int = 1  # epochs between epoch_K.pth; 0 keeps only last/best
    log_interval: int = 20
    seed: int = 0
    aspect_ratio_grouping: bool = True
    sync_bn: bool = True
    find_unused_parameters: bool = False  # DDP: set when some parameters get no gradient
    init_from: Optional[str] = None  # checkpoint whose model weights start the run (warm start)
    init_strict: bool = False  # true: any weight of init_from that does not fit is an error
    ema: EmaConfig = field(default_factory=EmaConfig)
    # Wall-clock budget of the training loop (seconds, or "90s", "10m", "1h30m"): the LR
    # schedule is compressed to the iterations that fit, measured as the run goes.
    time_budget: Optional[Union[float, str]] = None

    def validate(self) -> None:
        """Every key's range, and ``train.time_budget`` parses as a duration > 0."""
        check_ranges(self, prefix="train")
        if self.time_budget is not None:
            try:
                parse_duration(self.time_budget)
            except ValueError as e:
                raise ConfigError(f"train.time_budget: {e}") from None


@dataclass
class OneBallConfig:
    """VIPriors ball prior: if the best ``class_name`` detection scores >= ``min_score``, keep
    it and the detections of that class whose boxes overlap it; drop the others."""

    class_name: str = "ball"
    min_score: float = 0.2


@dataclass
class PostConfig:
    """Post-processing of each image's final detections (after TTA / ensembling), in this
    order: ``one_ball`` (off when null), then ``test.score_thresh``, then ``max_per_class``
    (class name -> most detections kept, best first)."""

    one_ball: Optional[OneBallConfig] = None
    max_per_class: dict[str, int] = field(default_factory=dict)


@dataclass
class TestConfig:
    batch_size: int = 1
    mask_thresh: float = 0.5
    score_thresh: float = 0.0  # extra filter on exported predictions
    paste_chunk: int = 16  # masks pasted and RLE-encoded per chunk
    post: PostConfig = field(default_factory=PostConfig)

    def validate(self) -> None:
        check_ranges(self, prefix="test")


@dataclass
class TTAConfig:
    """Test-time augmentation (``vipseg test --tta``): every scale with and (``flip``)
    without a horizontal flip. A scale is a factor of the original image (``0.8``) or a
    ``[long, short]`` size the image is fitted into, aspect kept. Boxes of all views are
    merged per class (``nms`` or weighted box fusion ``wbf`` at ``iou_thresh``, at most
    ``max_detections`` per image); the merged boxes' masks are re-predicted in every view and
    averaged (``average``) or taken from the view that found the box (``select``)."""

    scales: list[Union[float, list[int]]] = field(
        default_factory=lambda: [1.0, 0.8, 1.5, [1920, 1440], [1760, 1280]])
    flip: bool = True
    merge: Literal["nms", "wbf"] = "nms"
    iou_thresh: float = 0.5
    max_detections: int = 100
    mask_merge: Literal["average", "select"] = "average"

    def validate(self) -> None:
        if not self.scales:
            raise ConfigError("tta.scales must list at least one scale")
        for s in self.scales:
            if isinstance(s, list) and len(s) != 2:
                raise ConfigError(f"tta.scales entries must be a factor > 0 or a [long, short] "
                                  f"size of positive pixels, got {s}")
        check_ranges(self, prefix="tta")


@dataclass
class SwaConfig:
    """The SWA stage (``vipseg swa CONFIG CKPT NAME``): ``epochs`` more epochs from CKPT's
    weights with ``optimizer`` and a ``constant`` rate, or ``cyclic`` (each epoch from ``lr``
    down to ``lr × cycle_ratio``); the average takes the weights every ``update_every``
    iterations, or with 0 at the end of every epoch (a cycle's low point)."""

    epochs: int = 12
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        type="adamw", lr=1e-4, weight_decay=0.02))
    lr_policy: Literal["constant", "cyclic"] = "constant"
    cycle_ratio: float = 0.01
    update_every: int = 0

    def validate(self) -> None:
        check_ranges(self, prefix="swa")


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    tta: TTAConfig = field(default_factory=TTAConfig)
    swa: SwaConfig = field(default_factory=SwaConfig)

    @property
    def num_classes(self) -> int:
        """Number of object classes (background not counted)."""
        return len(self.dataset.classes)
