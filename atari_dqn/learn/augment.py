"""Random shifts of frame stacks (DrQ, Kostrikov et al. 2021; Yarats et al. 2021): the learner's
data augmentation.

Each stack of a batch is padded by PAD_PIXELS on every side by repeating its edge pixels, then
cropped back to its size at a random corner: the picture moves by -PAD_PIXELS..PAD_PIXELS pixels
in each direction, independently per stack, and the edge pixels fill the gap. All frames of one
stack move together. It works on uint8, on the device the batch is on; the corners come from the
caller's torch.Generator (on that device), so a seeded run is reproducible.
"""

from __future__ import annotations

import torch

PAD_PIXELS = 4  # DrQ's shift for 84x84 Atari frames


def edge_pad(states: torch.Tensor, pad_pixels: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + 2 pad, W + 2 pad), the outermost rows and columns repeated
    (numpy's "edge" mode). Built from cat and expand, which every dtype and device has
    (torch's replicate padding has no uint8 kernel on every device)."""
    top, bottom = states[:, :, :1], states[:, :, -1:]
    tall = torch.cat([top.expand(-1, -1, pad_pixels, -1), states,
                      bottom.expand(-1, -1, pad_pixels, -1)], dim=2)
    left, right = tall[..., :1], tall[..., -1:]
    return torch.cat([left.expand(-1, -1, -1, pad_pixels), tall,
                      right.expand(-1, -1, -1, pad_pixels)], dim=3)


def random_shift(states: torch.Tensor, generator: torch.Generator,
                 pad_pixels: int = PAD_PIXELS) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W), same dtype: stack b is the H x W crop of the edge-padded
    stack at corner (top_b, left_b), each uniform in [0, 2 pad_pixels]: a shift by
    top_b - pad_pixels rows and left_b - pad_pixels columns."""
    batch, _, height, width = states.shape
    corners = torch.randint(0, 2 * pad_pixels + 1, (batch, 2), generator=generator,
                            device=generator.device).tolist()
    padded = edge_pad(states, pad_pixels)
    shifted = torch.empty_like(states)
    for i, (top, left) in enumerate(corners):
        shifted[i] = padded[i, :, top:top + height, left:left + width]
    return shifted
