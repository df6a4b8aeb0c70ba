"""CQL(H) (Kumar et al. 2020, Conservative Q-Learning, eq. 4), for offline runs (--loss cql):
--cql-alpha * the batch mean of logsumexp_a Q(s, a) - Q(s, a_data), added to the TD loss. It is
>= 0, and pushes down the Q-values of the actions the data did not take. A distributional head's
Q is the mean of its samples."""

from __future__ import annotations

import torch

from atari_dqn.config import Config
from atari_dqn.learn.parts import LossTerm, Part, Step


def cql_penalty(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The batch mean of logsumexp_a Q(s, a) - Q(s, a_data), Q-values q_all (B, A), actions (B,)."""
    chosen = q_all.gather(1, actions[:, None]).squeeze(1)
    return (torch.logsumexp(q_all, dim=1) - chosen).mean()


class CQL(LossTerm):
    @staticmethod
    def wanted(config: Config) -> bool:
        return config.loss == "cql"

    def __init__(self, config: Config) -> None:
        self.alpha = config.cql_alpha

    def __call__(self, step: Step) -> Part:
        return Part(penalty=self.alpha * cql_penalty(step.q_all, step.actions))
