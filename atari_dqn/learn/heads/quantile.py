"""The quantile head (QR-DQN, Dabney et al. 2018): N quantiles of the return per action, at the
fixed levels tau_hat_i = (2i + 1) / (2N); Q is their mean. The chosen action's N quantiles are
regressed on the N target quantiles with the quantile Huber loss (kappa = 1); a transition's
priority is the mean over all (i, j) pairs of |target_j - quantile_i|. With --dueling the value
and advantage streams are combined per quantile.

quantile_huber_loss and quantile_losses take per-transition levels too ((B, N) instead of (N,)):
IQN (heads/iqn.py) regresses samples at sampled levels with the same loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from atari_dqn.config import STACK, Config
from atari_dqn.learn.network import QNetwork
from atari_dqn.learn.parts import Head, Samples

HUBER_KAPPA = 1.0  # the quantile Huber loss's threshold (QR-DQN's kappa; Huber's delta)


def quantile_midpoints(n_quantiles: int) -> torch.Tensor:
    """tau_hat_i = (2i + 1) / (2N), i = 0..N-1: the quantile levels a QR-DQN head regresses on
    (the midpoints of N equal probability bins, Dabney et al. 2018, Lemma 2)."""
    return (2 * torch.arange(n_quantiles, dtype=torch.float32) + 1) / (2 * n_quantiles)


def quantile_huber_loss(quantiles: torch.Tensor, targets: torch.Tensor, fractions: torch.Tensor,
                        kappa: float = HUBER_KAPPA) -> torch.Tensor:
    """QR-DQN's loss per transition (Dabney et al. 2018, eq. 10), as Dopamine reduces it.

    quantiles (B, N) predicted at the levels fractions (N,) or (B, N) (tau_hat), targets
    (B, N'): with u_ij = targets_j - quantiles_i,
        loss = sum_i mean_j |tau_i - 1{u_ij < 0}| * huber_kappa(u_ij) / kappa      -> (B,)
    where huber_kappa(u) = u^2 / 2 for |u| <= kappa, kappa * (|u| - kappa / 2) beyond.
    """
    u = targets[:, None, :] - quantiles[:, :, None]  # (B, N, N')
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u * u, kappa * (abs_u - 0.5 * kappa))
    asymmetry = (fractions[..., :, None] - (u.detach() < 0).to(u.dtype)).abs()
    return (asymmetry * huber / kappa).mean(dim=2).sum(dim=1)


def quantile_losses(quantiles: torch.Tensor, targets: torch.Tensor, fractions: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """quantile_huber_loss() (B,) and, without gradient, the mean over all (i, j) pairs of
    |targets_j - quantiles_i| (B,): the transitions' new priorities. One function so that
    --compile fuses both into a few kernels: eager, their (B, N, N') temporaries (32 x 200 x 200)
    cost more than the network's update on a CPU (docs/throughput.md)."""
    losses = quantile_huber_loss(quantiles, targets, fractions)
    td_errors = (targets[:, None, :] - quantiles.detach()[:, :, None]).abs().mean(dim=(1, 2))
    return losses, td_errors


class QuantileNetwork(QNetwork):
    """N outputs per action: the return's quantiles at quantile_fractions (a buffer, so that a
    saved model says its N)."""

    def __init__(self, n_actions: int, *, n_quantiles: int, dueling: bool = False,
                 in_channels: int = STACK, encoder_name: str = "nature") -> None:
        if n_quantiles < 1:
            raise ValueError(f"n_quantiles must be a positive integer, got {n_quantiles}")
        super().__init__(n_actions, dueling=dueling, in_channels=in_channels,
                         encoder_name=encoder_name, per_action=(n_quantiles,))
        self.n_quantiles = n_quantiles
        self.register_buffer("quantile_fractions", quantile_midpoints(n_quantiles))

    def quantiles(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n_actions, n_quantiles) return quantiles at the levels quantile_fractions."""
        return super().forward(states)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.quantiles(states).mean(dim=2)

    def samples(self, states: torch.Tensor, rng: np.random.Generator | None = None
                ) -> torch.Tensor:
        return self.quantiles(states)


class QuantileHead(Head):
    OWN_KEYS = ("quantile_fractions",)

    @classmethod
    def network(cls, n_actions: int, settings: Mapping[str, Any]) -> QuantileNetwork:
        return QuantileNetwork(n_actions, n_quantiles=settings["n_quantiles"],
                               dueling=settings["dueling"], encoder_name=settings["network"])

    @classmethod
    def settings_from_weights(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return {"n_quantiles": state["quantile_fractions"].numel()}

    @classmethod
    def outputs_per_action(cls, settings: Mapping[str, Any]) -> int:
        return settings["n_quantiles"]

    def __init__(self, config: Config, device: torch.device) -> None:
        super().__init__(config, device)
        self.quantiles: dict[QNetwork, Any] = {}  # a network's compiled quantiles(), --compile
        self.losses: Any = quantile_losses

    def compile(self, networks: Sequence[QNetwork]) -> None:
        # quantiles() is not forward(), so the networks' in-place compile does not cover it
        self.quantiles = {net: torch.compile(net.quantiles, dynamic=False) for net in networks}
        self.losses = torch.compile(quantile_losses, dynamic=False)

    def values(self, network: QNetwork, states: torch.Tensor) -> Samples:
        quantiles = self.quantiles.get(network, network.quantiles)
        return Samples(quantiles(states), network.quantile_fractions)

    def td_losses(self, chosen: torch.Tensor, levels: torch.Tensor | None,
                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.losses(chosen, targets, levels)
