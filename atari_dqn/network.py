"""The Nature DQN network (Mnih et al. 2015), optionally with a dueling head (Wang et al. 2016).

Input: (B, 4, 84, 84) uint8 frame stacks, scaled to [0, 1] inside forward so that replay batches
travel to the device as bytes. Output: (B, n_actions) Q-values.
"""

from __future__ import annotations

import torch
from torch import nn

from atari_dqn.config import SCREEN_SIZE, STACK

HIDDEN = 512
# (out_channels, kernel, stride) of the three convolutions
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


def conv_output_size(size: int = SCREEN_SIZE) -> int:
    """Side of the last feature map (7 for 84x84 input); no padding anywhere."""
    for _, kernel, stride in CONVS:
        size = (size - kernel) // stride + 1
    return size


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_out))


class QNetwork(nn.Module):
    def __init__(self, n_actions: int, *, dueling: bool = False, in_channels: int = STACK) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out, kernel, stride in CONVS:
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        n_features = channels * conv_output_size() ** 2  # 64 * 7 * 7 = 3136
        self.dueling = dueling
        if dueling:
            self.value = _mlp(n_features, 1)
            self.advantage = _mlp(n_features, n_actions)
        else:
            self.head = _mlp(n_features, n_actions)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.features(states.float() / 255.0)
        if not self.dueling:
            return self.head(x)
        advantage = self.advantage(x)
        # Subtracting the mean advantage makes value and advantage identifiable (Wang et al. eq. 9).
        return self.value(x) + advantage - advantage.mean(dim=1, keepdim=True)
