"""Munchausen (M-DQN, Vieillard, Pietquin and Geist 2020), --munchausen: the TD term with
a soft target and a bonus for the action taken,

    target_j = r + ALPHA * clip(TAU * log pi(a|s), LOG_POLICY_CLIP, 0)
                 + discounts * sum_a' pi(a'|s') (Z_target(s', a')_j - TAU * log pi(a'|s'))

pi = softmax(q_target / TAU), the policy of the target network's Q-values (a distributional
head's: the mean of its samples at s'; at s the head's Q, IQN's over K taus). The bootstrap is
applied to every target sample j of the next state's distribution, as M-IQN does; it replaces
the max (and Double DQN's argmax: --double has no effect). ALPHA, TAU and the clipping are the
paper's for Atari.

n-step returns: the memory folds n rewards into r and gamma^n (or 0 after a terminal) into
discounts. The bonus is added for the first action only, a_t: the paper's target is one-step,
and the n - 1 actions after it are not in the batch; the soft bootstrap is taken at s_{t+n}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atari_dqn.config import Config
from atari_dqn.learn.losses.td import TD
from atari_dqn.learn.parts import Step

ALPHA = 0.9             # weight of the scaled log-policy bonus
TAU = 0.03              # entropy temperature of the softmax policy
LOG_POLICY_CLIP = -1.0  # l0: the bonus TAU * log pi(a|s) is clipped to [l0, 0]


def munchausen_targets(rewards: torch.Tensor, discounts: torch.Tensor, actions: torch.Tensor,
                       q_states: torch.Tensor, next_values: torch.Tensor, *,
                       alpha: float = ALPHA, tau: float = TAU,
                       clip: float = LOG_POLICY_CLIP) -> torch.Tensor:
    """(B, S') targets: rewards, discounts, actions (B,); q_states (B, A) the target network's
    Q-values at the states; next_values (B, A, S') its samples at the next states."""
    log_pi = F.log_softmax(q_states / tau, dim=1)
    bonus = alpha * torch.clamp(tau * log_pi.gather(1, actions[:, None]).squeeze(1), clip, 0.0)
    next_log_pi = F.log_softmax(next_values.mean(dim=2) / tau, dim=1)[:, :, None]  # (B, A, 1)
    soft = (next_log_pi.exp() * (next_values - tau * next_log_pi)).sum(dim=1)       # (B, S')
    return (rewards + bonus)[:, None] + discounts[:, None] * soft


class Munchausen(TD):
    replaces = "td"

    @staticmethod
    def wanted(config: Config) -> bool:
        return TD.wanted(config) and config.munchausen

    def targets(self, step: Step) -> torch.Tensor:
        return munchausen_targets(step.rewards, step.discounts, step.actions,
                                  step.q_values(step.target, step.states),
                                  step.next_values.values)
