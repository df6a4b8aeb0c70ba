"""The TD loss (DQN, Mnih et al. 2015; Double DQN, van Hasselt et al. 2016): the taken action's
samples regressed, with the head's loss, on

    target_j = rewards + discounts * Z_target(next_states, a*)_j

a* the argmax of the target network's Q at the next states, or with --double of the online
network's (Double DQN). The replay memory folds n-step returns and terminals into rewards and
discounts (gamma^n, 0 after a terminal), so the term needs neither gamma nor the done flags.
Every run but behaviour cloning's has it (or a term that replaces it: munchausen)."""

from __future__ import annotations

import torch

from atari_dqn.config import Config
from atari_dqn.learn.parts import LossTerm, Part, Step


class TD(LossTerm):
    @staticmethod
    def wanted(config: Config) -> bool:
        return config.loss != "bc"

    def __init__(self, config: Config) -> None:
        self.double = config.double

    def targets(self, step: Step) -> torch.Tensor:
        """(B, S') the TD targets, without gradient."""
        next_values = step.next_values
        chooser = (step.q_values(step.online, step.next_states) if self.double
                   else next_values.q)
        index = chooser.argmax(dim=1)[:, None, None].expand(-1, 1, next_values.values.shape[2])
        bootstrap = next_values.values.gather(1, index).squeeze(1)
        return step.rewards[:, None] + step.discounts[:, None] * bootstrap

    def __call__(self, step: Step) -> Part:
        with torch.no_grad():
            targets = self.targets(step)
        losses, priorities = step.head.td_losses(step.chosen, step.online_values.levels, targets)
        return Part(losses=losses, priorities=priorities)
