"""The two kinds of parts the learner is made of, and Step, the one update they share.

A head (atari_dqn/learn/heads/, class Head below) is what the network predicts per action: it
builds the network (whose q_values() acting takes the argmax of), gives learning's samples of
the return with their quantile levels, the Q-values a target chooses by, and its TD loss with
the transitions' new priorities; a head that samples keeps its generator's state.

A loss term (atari_dqn/learn/losses/, class LossTerm below) is one part of what an update
minimises: per-transition losses (weighted by the importance weights, then averaged), a penalty
added as it is, and (one term a run) the new priorities. Its wanted(config) says whether a run
has it; `replaces` names a term it stands in for.

Agent.learn makes one Step per update and calls every term on it; a network pass that two terms
ask for (the online network's samples, the target network's at the next states) runs once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch

from atari_dqn.config import Config
from atari_dqn.learn.network import QNetwork


@dataclass(frozen=True)
class Samples:
    """Samples of the return of every action, and the quantile levels they were taken at."""
    values: torch.Tensor         # (B, A, S); a scalar head: S = 1, the Q-values
    levels: torch.Tensor | None  # (S,) or (B, S) quantile levels tau; None for a scalar head

    @property
    def q(self) -> torch.Tensor:
        """(B, A): the Q-values, the samples' mean."""
        return self.values.mean(dim=2)


class Head:
    """What every head answers; a head module subclasses this and registers one line.

    Class side (no instance needed: policy.load and the Ape-X actors build networks alone):
      network(n_actions, settings)    a fresh network; settings: a Config's fields by name
      OWN_KEYS                        state_dict keys only this head's networks have
      settings_from_weights(state)    the head's settings these weights imply ({"n_quantiles": 8})
      outputs_per_action(settings)    outputs of the last layer per action
    Learning side (one instance per Agent):
      values(network, states)         learning's Samples, with gradient where the caller has it
      q_values(network, states)       (B, A) Q-values to choose an action by in a target (Double
                                      DQN's a*, Munchausen's policy)
      td_losses(chosen, levels, targets)  per transition the TD loss and |TD error| (priorities)
                                      of the taken action's samples (B, S) at their levels
                                      against the targets (B, S')
      compile(networks)               compile what values() runs (--compile)
      state_dict() / load_state_dict()  state of its own beyond the networks (a generator)
    """

    OWN_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def network(cls, n_actions: int, settings: Mapping[str, Any]) -> QNetwork:
        raise NotImplementedError

    @classmethod
    def settings_from_weights(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return {}

    @classmethod
    def outputs_per_action(cls, settings: Mapping[str, Any]) -> int:
        return 1

    def __init__(self, config: Config, device: torch.device) -> None:
        self.device = device

    def compile(self, networks: Sequence[QNetwork]) -> None:
        """Nothing to compile beyond the networks' forward, which Agent compiles in place."""

    def values(self, network: QNetwork, states: torch.Tensor) -> Samples:
        raise NotImplementedError

    def q_values(self, network: QNetwork, states: torch.Tensor) -> torch.Tensor:
        return network(states)

    def td_losses(self, chosen: torch.Tensor, levels: torch.Tensor | None,
                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore; a checkpoint from before the head had state holds none."""


@dataclass(frozen=True)
class Part:
    """What one loss term adds to an update."""
    losses: torch.Tensor | None = None      # (B,) per transition: importance-weighted, averaged
    penalty: torch.Tensor | None = None     # () added to the loss as it is
    priorities: torch.Tensor | None = None  # (B,) the transitions' new priorities, no gradient


class LossTerm:
    """One part of what an update minimises; a loss module subclasses this and registers one
    line. wanted(config): whether a run has this term; replaces: the name of a term this one
    stands in for when both are wanted."""

    replaces: ClassVar[str | None] = None

    @staticmethod
    def wanted(config: Config) -> bool:
        raise NotImplementedError

    def __init__(self, config: Config) -> None:
        pass

    def __call__(self, step: Step) -> Part:
        raise NotImplementedError


class Step:
    """One update: the batch on the device (states already augmented) and the network passes the
    terms ask for, each run at most once, in float32 (with --precision bf16 the networks run
    under bfloat16 autocast, and what follows their outputs in float32)."""

    def __init__(self, head: Head, online: QNetwork, target: QNetwork, *, bf16: bool,
                 states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                 next_states: torch.Tensor, discounts: torch.Tensor) -> None:
        self.head, self.online, self.target, self.bf16 = head, online, target, bf16
        self.states, self.actions, self.rewards = states, actions, rewards  # (B, ...), (B,), (B,)
        self.next_states, self.discounts = next_states, discounts          # (B, ...), (B,)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.states.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @cached_property
    def online_values(self) -> Samples:
        """The online network's samples at the states, with gradient."""
        with torch.enable_grad(), self._autocast():
            samples = self.head.values(self.online, self.states)
        return Samples(samples.values.float(), samples.levels)

    @cached_property
    def q_all(self) -> torch.Tensor:
        """(B, A) the online network's Q-values at the states, with gradient."""
        return self.online_values.q

    @cached_property
    def chosen(self) -> torch.Tensor:
        """(B, S) the online samples of the actions taken, with gradient."""
        values = self.online_values.values
        index = self.actions[:, None, None].expand(-1, 1, values.shape[2])
        return values.gather(1, index).squeeze(1)

    @cached_property
    def next_values(self) -> Samples:
        """The target network's samples at the next states, without gradient."""
        with torch.no_grad(), self._autocast():
            samples = self.head.values(self.target, self.next_states)
        return Samples(samples.values.float(), samples.levels)

    def q_values(self, network: QNetwork, states: torch.Tensor) -> torch.Tensor:
        """(B, A) the head's Q-values of network at states to choose by, without gradient."""
        with torch.no_grad(), self._autocast():
            q = self.head.q_values(network, states)
        return q.float()
