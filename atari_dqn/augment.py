"""Random shifts of frame stacks (DrQ, Kostrikov et al. 2021; Yarats et al. 2021): the learner's
data augmentation.

Each stack of a batch is padded by PAD_PIXELS on every side by repeating its edge pixels, then
cropped back to its size at a random offset: the picture moves by -PAD_PIXELS..PAD_PIXELS pixels
in each direction, independently per stack, and the edge pixels fill the gap. All frames of one
stack move together. Done by indexing, on uint8, on the device the batch is on; the offsets come
from the caller's torch.Generator (on that device), so a seeded run is reproducible.
"""

from __future__ import annotations

import torch

PAD_PIXELS = 4  # DrQ's shift for 84x84 Atari frames


def random_shift(states: torch.Tensor, generator: torch.Generator,
                 pad_pixels: int = PAD_PIXELS) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W), same dtype: each stack shifted by its own random offset.

    out[b, c, y, x] = states[b, c, clamp(y + dy_b), clamp(x + dx_b)] with dy_b, dx_b uniform in
    [-pad_pixels, pad_pixels]: exactly a replicate-pad by pad_pixels and a crop at offset
    (dy_b + pad_pixels, dx_b + pad_pixels).
    """
    batch, channels, height, width = states.shape
    device = states.device
    offsets = torch.randint(0, 2 * pad_pixels + 1, (batch, 2), generator=generator,
                            device=generator.device).to(device) - pad_pixels
    rows = (torch.arange(height, device=device) + offsets[:, :1]).clamp_(0, height - 1)  # (B, H)
    cols = (torch.arange(width, device=device) + offsets[:, 1:]).clamp_(0, width - 1)    # (B, W)
    b = torch.arange(batch, device=device)[:, None, None, None]
    c = torch.arange(channels, device=device)[None, :, None, None]
    return states[b, c, rows[:, None, :, None], cols[:, None, None, :]]
