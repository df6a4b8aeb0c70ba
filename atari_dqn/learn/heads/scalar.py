"""The scalar head (DQN, Mnih et al. 2015): one Q-value per action, regressed on its TD target with
the Huber loss (delta 1); a transition's priority is |target - Q(s, a)|. The network is
network.QNetwork as it stands; its samples are the Q-values themselves (S = 1, no levels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from atari_dqn.learn.network import QNetwork
from atari_dqn.learn.parts import Head, Samples


class ScalarHead(Head):
    @classmethod
    def network(cls, n_actions: int, settings: Mapping[str, Any]) -> QNetwork:
        return QNetwork(n_actions, dueling=settings["dueling"], encoder_name=settings["network"])

    def values(self, network: QNetwork, states: torch.Tensor) -> Samples:
        return Samples(network(states)[:, :, None], None)

    def td_losses(self, chosen: torch.Tensor, levels: torch.Tensor | None,
                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Huber loss (B,) of Q(s, a) = chosen (B, 1) against targets (B, 1), and |TD error|."""
        q, target = chosen[:, 0], targets[:, 0]
        return F.smooth_l1_loss(q, target, reduction="none"), (target - q.detach()).abs()
