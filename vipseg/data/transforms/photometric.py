"""Photometric distortion (brightness, contrast, saturation, hue, channel order), mmdet-style.

Each operation is applied with probability ``prob``; contrast goes before or after the HSV
steps with equal chance, as in mmdetection's ``PhotoMetricDistortion``. The work is done on
uint8 images with lookup tables (values are clipped to 0..255 after each step), which keeps it
a few milliseconds even on full-resolution crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotometricParams:
    """One draw: ``brightness`` delta in 0..255 units, ``contrast`` / ``saturation`` factors,
    ``hue`` delta in degrees (0..360 scale), ``contrast_first``, ``channel_order`` (permutation
    of RGB) — neutral values mean "not applied"."""

    brightness: float = 0.0
    contrast: float = 1.0
    contrast_first: bool = True
    saturation: float = 1.0
    hue: float = 0.0
    channel_order: tuple[int, int, int] = (0, 1, 2)


class PhotometricSampler:
    """Draws :class:`PhotometricParams`; see the module docstring for the ranges' meaning."""

    def __init__(self, prob: float = 0.5, brightness_delta: float = 32.0,
                 contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: float = 18.0,
                 channel_swap_prob: float = 0.0) -> None:
        self.prob = prob
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.channel_swap_prob = channel_swap_prob

    def sample(self, rng: np.random.Generator) -> PhotometricParams:
        """Draw one set of parameters."""
        def maybe(low: float, high: float, neutral: float) -> float:
            return float(rng.uniform(low, high)) if rng.random() < self.prob else neutral

        brightness = maybe(-self.brightness_delta, self.brightness_delta, 0.0)
        contrast_first = bool(rng.random() < 0.5)
        contrast = maybe(*self.contrast_range, 1.0)
        saturation = maybe(*self.saturation_range, 1.0)
        hue = maybe(-self.hue_delta, self.hue_delta, 0.0)
        order = (0, 1, 2)
        if rng.random() < self.channel_swap_prob:
            order = tuple(int(i) for i in rng.permutation(3))
        return PhotometricParams(brightness, contrast, contrast_first, saturation, hue,
                                 order)  # type: ignore[arg-type]


def brightness_contrast_lut(brightness: float, contrast: float) -> np.ndarray:
    """uint8 [256] table of ``clip(clip(v + brightness) * contrast)``."""
    v = np.clip(np.arange(256, dtype=np.float32) + brightness, 0, 255) * contrast
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


def adjust_brightness_contrast(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """uint8 image [..., 3] with ``brightness`` added then scaled by ``contrast`` (clipped)."""
    if brightness == 0.0 and contrast == 1.0:
        return image
    return cv2.LUT(image, brightness_contrast_lut(brightness, contrast))


def _adjust_hsv(image: np.ndarray, saturation: float, hue: float) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # uint8: H in 0..179 (degrees / 2)
    if saturation != 1.0:
        lut = np.clip(np.round(np.arange(256, dtype=np.float32) * saturation), 0, 255).astype(np.uint8)
        hsv[..., 1] = cv2.LUT(hsv[..., 1], lut)
    if hue != 0.0:
        lut = ((np.arange(256) + round(hue / 2.0)) % 180).astype(np.uint8)
        hsv[..., 0] = cv2.LUT(hsv[..., 0], lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def apply_photometric(image: np.ndarray, p: PhotometricParams) -> np.ndarray:
    """Apply ``p`` to a uint8 RGB image [H, W, 3]; returns a new array (or ``image`` if neutral)."""
    out = adjust_brightness_contrast(image, p.brightness, p.contrast if p.contrast_first else 1.0)
    if p.saturation != 1.0 or p.hue != 0.0:
        out = _adjust_hsv(out, p.saturation, p.hue)
    if not p.contrast_first:
        out = adjust_brightness_contrast(out, 0.0, p.contrast)
    if p.channel_order != (0, 1, 2):
        out = np.ascontiguousarray(out[..., list(p.channel_order)])
    return out
