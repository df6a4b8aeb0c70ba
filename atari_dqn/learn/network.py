"""Q-networks: an encoder, the Nature CNN (Mnih et al. 2015) or the Impala ResNet (Espeholt et
al. 2018), then output streams, optionally dueling (Wang et al. 2016), each with its own 512-unit
hidden layer.

Input: (B, 4, 84, 84) uint8 frame stacks, scaled to [0, 1] inside forward so that replay batches
travel to the device as bytes. forward() returns (B, n_actions) Q-values.

QNetwork as it stands is the scalar head: one Q-value per action. The heads that predict a
distribution of the return subclass it (atari_dqn/learn/heads/: quantile, iqn) and give each
action `per_action` outputs; every network answers the same three calls:
  forward(states)            (B, n_actions) Q-values, a pure function of the weights and states
  q_values(states, rng)      what acting takes the argmax of (a head that samples takes its
                             samples from the rng's state, without advancing it: IQN)
  samples(states, rng)       (B, n_actions, S) samples of the return whose mean is the Q-value
                             (a scalar head: S = 1); Ape-X actors' priorities compare them

State-dict keys (loaders read the architecture from them, atari_dqn/policy.py):
  features.*                      the encoder: Nature features.0.weight (32, 4, 8, 8), ...;
                                  Impala features.0.conv.weight (16, 4, 3, 3), ...
  head.*                          without dueling: hidden layer, then n_actions [x per_action]
  value.*, advantage.*            with dueling: the two streams
  and a head's own (its OWN_KEYS: quantile_fractions, tau_embedding.*)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from atari_dqn.config import SCREEN_SIZE, STACK

HIDDEN = 512
ENCODERS = ("nature", "impala")
# (out_channels, kernel, stride) of the Nature CNN's three convolutions
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
# Impala: output channels of its stages (Espeholt et al. 2018; Dopamine's ImpalaEncoder)
IMPALA_CHANNELS = (16, 32, 32)
IMPALA_RESIDUAL_BLOCKS = 2  # per stage


def conv_output_size(size: int = SCREEN_SIZE) -> int:
    """Side of the last feature map (7 for 84x84 input); no padding anywhere."""
    for _, kernel, stride in CONVS:
        size = (size - kernel) // stride + 1
    return size


def impala_output_size(size: int = SCREEN_SIZE) -> int:
    """Side of the Impala encoder's last feature map: 84 -> 42 -> 21 -> 11. Its convolutions
    keep the size; each 3x3 max-pool with stride 2 and padding 1 halves it, rounding up."""
    for _ in IMPALA_CHANNELS:
        size = (size + 1) // 2
    return size


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convolutions keeping channels and size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class ImpalaStage(nn.Module):
    """3x3 convolution, 3x3 max-pool with stride 2 (halves the size), residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(out_channels)
                                      for _ in range(IMPALA_RESIDUAL_BLOCKS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pool(self.conv(x)))


def encoder(name: str, in_channels: int = STACK) -> tuple[nn.Sequential, int]:
    """(the encoder, the length of the feature vector it returns): uint8-free, [0, 1] input."""
    layers: list[nn.Module] = []
    channels = in_channels
    if name == "nature":
        for out, kernel, stride in CONVS:
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
            channels = out
        side = conv_output_size()  # 64 * 7 * 7 = 3136 features
    elif name == "impala":
        for out in IMPALA_CHANNELS:
            layers.append(ImpalaStage(channels, out))
            channels = out
        layers.append(nn.ReLU())
        side = impala_output_size()  # 32 * 11 * 11 = 3872 features
    else:
        raise ValueError(f"unknown encoder {name!r}: one of {', '.join(ENCODERS)}")
    return nn.Sequential(*layers, nn.Flatten()), channels * side * side


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_out))


class QNetwork(nn.Module):
    """The encoder and the output streams; as it stands, the scalar head (per_action = ()).
    A subclass passes per_action = (N,) for N outputs per action, or calls streams() on features
    of its own (IQN: one row of features per sampled quantile level)."""

    def __init__(self, n_actions: int, *, dueling: bool = False, in_channels: int = STACK,
                 encoder_name: str = "nature", per_action: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.encoder_name = encoder_name
        self.per_action = per_action
        self.features, self.n_features = encoder(encoder_name, in_channels)
        outputs = math.prod(per_action)
        self.dueling = dueling
        if dueling:
            self.value = _mlp(self.n_features, outputs)
            self.advantage = _mlp(self.n_features, n_actions * outputs)
        else:
            self.head = _mlp(self.n_features, n_actions * outputs)

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n_features): the encoder on uint8 states, scaled to [0, 1]."""
        return self.features(states.float() / 255.0)

    def streams(self, x: torch.Tensor) -> torch.Tensor:
        """features (*lead, n_features) -> (*lead, n_actions, *per_action)."""
        lead = x.shape[:-1]
        if not self.dueling:
            return self.head(x).view(*lead, self.n_actions, *self.per_action)
        value = self.value(x).view(*lead, 1, *self.per_action)
        advantage = self.advantage(x).view(*lead, self.n_actions, *self.per_action)
        # Subtracting the mean advantage makes value and advantage identifiable (Wang et al. eq. 9);
        # a distributional head does it per output: value + advantage - their mean over actions.
        return value + advantage - advantage.mean(dim=len(lead), keepdim=True)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.streams(self.encode(states))

    def q_values(self, states: torch.Tensor, rng: np.random.Generator | None = None
                 ) -> torch.Tensor:
        """(B, n_actions): what acting takes the argmax of. rng: the caller's (epsilon-greedy's),
        for a head that samples; this one does not look at it."""
        return self(states)

    def samples(self, states: torch.Tensor, rng: np.random.Generator | None = None
                ) -> torch.Tensor:
        """(B, n_actions, S) samples of the return whose mean over S is q_values(): here S = 1."""
        return self(states)[:, :, None]
