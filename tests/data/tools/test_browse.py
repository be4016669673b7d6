"""draw_sample blends each instance's colour over exactly its mask, packed or full."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors

from vipseg.data.tools.browse import PALETTE, draw_sample
from vipseg.data.transforms.basic import packed_target


def test_draw_sample_colours_exactly_the_mask_pixels():
    image = torch.full((3, 40, 50), 100, dtype=torch.uint8)
    masks = torch.zeros(1, 40, 50, dtype=torch.bool)
    masks[0, 20:30, 5:15] = True
    masks[0, 25, 25] = True  # a second, separate part of the same instance
    full = {"boxes": torch.tensor([[5.0, 20.0, 31.0, 30.0]]), "labels": torch.tensor([0]),
            "masks": tv_tensors.Mask(masks)}
    packed = packed_target(full)
    drawn = draw_sample(image, packed, ["human"], alpha=0.5)
    assert np.array_equal(drawn, draw_sample(image, full, ["human"], alpha=0.5))
    expected = (100 * 0.5 + PALETTE[0] * 0.5).astype(np.uint8)
    assert (drawn[22:28, 7:13] == expected).all() and (drawn[25, 25] == expected).all()
    assert (drawn[24:27, 21:24] == 100).all() and (drawn[20:30, 32:] == 100).all()  # not mask, box or text
    assert (drawn[32:] == 100).all()
