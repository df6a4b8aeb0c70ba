"""Q-networks: an encoder, the Nature CNN (Mnih et al. 2015) or the Impala ResNet (Espeholt et
al. 2018), then a head: scalar or quantile (QR-DQN, Dabney et al. 2018), each optionally dueling
(Wang et al. 2016). Every head starts with its own 512-unit hidden layer.

Input: (B, 4, 84, 84) uint8 frame stacks, scaled to [0, 1] inside forward so that replay batches
travel to the device as bytes. forward() returns (B, n_actions) Q-values: what acting needs.
A quantile head predicts n_quantiles values of the return's distribution per action;
quantiles() returns them, (B, n_actions, n_quantiles), for learning, and forward() their mean.

State-dict keys (loaders read the architecture from them, atari_dqn/policy.py):
  features.*                      the encoder: Nature features.0.weight (32, 4, 8, 8), ...;
                                  Impala features.0.conv.weight (16, 4, 3, 3), ...
  head.*                          without dueling: hidden layer, then n_actions [x n_quantiles]
  value.*, advantage.*            with dueling: the two streams
  quantile_fractions              quantile head only: the (n_quantiles,) midpoints tau_hat
"""

from __future__ import annotations

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


def quantile_midpoints(n_quantiles: int) -> torch.Tensor:
    """tau_hat_i = (2i + 1) / (2N), i = 0..N-1: the quantile levels a QR-DQN head regresses on
    (the midpoints of N equal probability bins, Dabney et al. 2018, Lemma 2)."""
    return (2 * torch.arange(n_quantiles, dtype=torch.float32) + 1) / (2 * n_quantiles)


class QNetwork(nn.Module):
    """n_quantiles None: a scalar head (one Q-value per action); N: a quantile head."""

    def __init__(self, n_actions: int, *, dueling: bool = False, in_channels: int = STACK,
                 n_quantiles: int | None = None, encoder_name: str = "nature") -> None:
        super().__init__()
        if n_quantiles is not None and n_quantiles < 1:
            raise ValueError(f"n_quantiles must be a positive integer or None, got {n_quantiles}")
        self.n_actions = n_actions
        self.n_quantiles = n_quantiles
        self.encoder_name = encoder_name
        self.features, n_features = encoder(encoder_name, in_channels)
        per_action = n_quantiles or 1
        self.dueling = dueling
        if dueling:
            self.value = _mlp(n_features, per_action)
            self.advantage = _mlp(n_features, n_actions * per_action)
        else:
            self.head = _mlp(n_features, n_actions * per_action)
        if n_quantiles is not None:
            self.register_buffer("quantile_fractions", quantile_midpoints(n_quantiles))

    def _outputs(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n_actions) for a scalar head, (B, n_actions, n_quantiles) for a quantile head."""
        x = self.features(states.float() / 255.0)
        batch = x.shape[0]
        per_action = () if self.n_quantiles is None else (self.n_quantiles,)
        if not self.dueling:
            return self.head(x).view(batch, self.n_actions, *per_action)
        value = self.value(x).view(batch, 1, *per_action)
        advantage = self.advantage(x).view(batch, self.n_actions, *per_action)
        # Subtracting the mean advantage makes value and advantage identifiable (Wang et al. eq. 9);
        # a quantile head does it per quantile: value quantiles + advantage quantiles - their mean.
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        outputs = self._outputs(states)
        return outputs if self.n_quantiles is None else outputs.mean(dim=2)

    def quantiles(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n_actions, n_quantiles) return quantiles at the levels quantile_fractions."""
        if self.n_quantiles is None:
            raise TypeError("quantiles(): this network has a scalar head")
        return self._outputs(states)
