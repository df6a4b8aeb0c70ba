"""Behaviour cloning, for offline runs (--loss bc): per transition the cross-entropy of
softmax_a Q(s, a), the Q-values read as logits, on the data's action. No TD target is computed
(the next states are not looked at); a transition's priority is its loss. A distributional head's
Q is the mean of its samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atari_dqn.config import Config
from atari_dqn.learn.parts import LossTerm, Part, Step


def bc_losses(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(B,) the cross-entropy of softmax(q_all) (B, A) on the data's actions (B,)."""
    return F.cross_entropy(q_all, actions, reduction="none")


class BehaviourCloning(LossTerm):
    @staticmethod
    def wanted(config: Config) -> bool:
        return config.loss == "bc"

    def __call__(self, step: Step) -> Part:
        losses = bc_losses(step.q_all, step.actions)
        return Part(losses=losses, priorities=losses.detach())
