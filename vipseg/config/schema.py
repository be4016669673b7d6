"""Typed config schema: every key a config file may hold, with its default.

The tree mirrors the YAML: ``dataset``, ``model``, ``augment``, ``optimizer``, ``schedule``,
``train``, ``test``. Image sizes are ``[width, height]`` in pixels; colours are per-channel RGB
values in 0..255. Classes never see this object: each subsystem's ``build_*(cfg)`` maps its
section onto plain keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

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
        if self.min_size < 0:
            raise ConfigError(f"dataset.min_size must be >= 0, got {self.min_size}")


# ----------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    """``name``: resnet18/34/50/101 (torchvision) or ``timm:<model>`` (any features_only model).

    ``out_indices``: stages by stride, ``i`` -> 1 / 2^(i+1) (1..4 = 1/4..1/32), for both kinds.
    For timm models ``norm`` replaces their BatchNorm layers only (LayerNorm stays) and
    ``kwargs`` are extra ``timm.create_model`` arguments.
    """

    name: str = "resnet50"
    norm: Norm = "GN"
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    drop_path_rate: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class NeckConfig:
    channels: int = 256
    norm: Norm = "none"


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
class RoIHeadsConfig:
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    box_head_convs: int = 4
    box_head_channels: int = 256
    representation_size: int = 1024
    mask_head_convs: int = 4
    mask_head_channels: int = 256
    norm: Norm = "GN"
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100


@dataclass
class ModelConfig:
    family: Literal["mask_rcnn"] = "mask_rcnn"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)


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
    """Linear warm-up over ``warmup_iters`` iterations, then a per-epoch step or cosine decay."""

    policy: Literal["step", "cosine", "constant"] = "step"
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    steps: list[int] = field(default_factory=lambda: [8, 11])  # epochs at which lr *= gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


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


@dataclass
class TestConfig:
    batch_size: int = 1
    mask_thresh: float = 0.5
    score_thresh: float = 0.0  # extra filter on exported predictions
    paste_chunk: int = 16  # masks pasted and RLE-encoded per chunk


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)

    @property
    def num_classes(self) -> int:
        """Number of object classes (background not counted)."""
        return len(self.dataset.classes)
