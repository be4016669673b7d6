"""Photometric distortion: neutral draws change nothing; each operation does what it says."""

from __future__ import annotations

import cv2
import numpy as np

from vipseg.data.transforms.photometric import PhotometricParams, PhotometricSampler, apply_photometric


def test_operations():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    assert apply_photometric(image, PhotometricParams()) is image
    brighter = apply_photometric(image, PhotometricParams(brightness=10.0))
    assert np.array_equal(brighter, np.clip(image.astype(int) + 10, 0, 255))
    swapped = apply_photometric(image, PhotometricParams(channel_order=(2, 0, 1)))
    assert np.array_equal(swapped, image[..., [2, 0, 1]])
    grey = apply_photometric(image, PhotometricParams(saturation=0.0))
    assert (grey.max(2).astype(int) - grey.min(2)).max() <= 1
    hue = cv2.cvtColor(apply_photometric(image, PhotometricParams(hue=40.0)), cv2.COLOR_RGB2HSV)[..., 0]
    ref = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 0]
    saturated = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1] > 100
    shift = (hue.astype(int) - ref)[saturated] % 180
    assert np.median(shift) == 20  # 40 degrees = 20 OpenCV hue units


def test_sampler_ranges_and_probability():
    sampler = PhotometricSampler(prob=0.5, brightness_delta=32, contrast_range=(0.5, 1.5),
                                 saturation_range=(0.5, 1.5), hue_delta=18, channel_swap_prob=0.0)
    draws = [sampler.sample(np.random.default_rng(i)) for i in range(200)]
    assert all(abs(d.brightness) <= 32 and 0.5 <= d.contrast <= 1.5 and abs(d.hue) <= 18 for d in draws)
    assert 0.35 < np.mean([d.brightness != 0 for d in draws]) < 0.65
    assert all(d.channel_order == (0, 1, 2) for d in draws)
    off = PhotometricSampler(prob=0.0).sample(np.random.default_rng(0))
    assert (off.brightness, off.contrast, off.saturation, off.hue) == (0.0, 1.0, 1.0, 0.0)
