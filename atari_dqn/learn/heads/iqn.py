"""The implicit quantile head (IQN, Dabney et al. 2018, "Implicit Quantile Networks"), as Dopamine
configures it: the network maps a quantile level tau in [0, 1) to the return's tau-quantile of
every action, Z_tau(s, a).

Network. The encoder's features psi(s) (n_features) are multiplied elementwise by an embedding
of tau,
    phi(tau)_j = ReLU(sum_{i=0}^{n-1} cos(pi i tau) w_ij + b_j),   n = EMBEDDING_SIZE = 64
(the paper's eq. 4; Dopamine's code counts i from 1), then go through the 512-unit hidden layer
and the output layer, one row per tau: dueling (--dueling) combines value and advantage per
tau, as the quantile head does per quantile.

Learning. Each update draws N = LEARN_SAMPLES taus per transition for the online network's
samples and N' = LEARN_SAMPLES others for the target network's at the next state; the chosen
action's N samples are regressed on the N' targets with the quantile Huber loss (kappa = 1) at
their own taus (heads/quantile.py's loss, which takes per-transition levels). Q(s, a) is the
mean over K = ACT_SAMPLES taus. Where a target chooses an action by Q (Double DQN's a* by the
online network, Munchausen's policy at s), the head draws K taus. Without Double DQN the greedy
a* is the argmax of the mean of the N' target samples already drawn (Dopamine draws K separate
taus for it: one target pass less here, an estimate of the same mean). The taus of learning come
from a torch.Generator seeded from (--seed, seeds.IQN_TAUS) and kept in the agent's state_dict(),
so that a resumed run draws what the uninterrupted one draws.

Acting. q_values(states, rng) averages K taus drawn from a stream the caller's numpy rng
(epsilon-greedy's) names without advancing it: np.random.Generator(rng.bit_generator.jumped()),
the rng's PCG64 state moved 2^128 draws on, independent of what the rng draws next. The rng's
own use is then epsilon-greedy's alone (its promise holds), and the taus are a pure function of
the rng's state: a training run's act rng is in its checkpoint (exact resume, bit-reproducible
on a CPU), an evaluation's is seeded by the evaluation's seeds, an Ape-X actor's by its index.
forward(states) without taus (policy.load, inspect_run's Q-values) averages K fixed taus, drawn
once from FIXED_TAUS_SEED: a pure function of the weights and the states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from atari_dqn import seeds
from atari_dqn.config import STACK, Config
from atari_dqn.learn.heads.quantile import quantile_losses
from atari_dqn.learn.network import QNetwork
from atari_dqn.learn.parts import Head, Samples

EMBEDDING_SIZE = 64  # n: cosines cos(pi i tau), i = 0..n-1, embedding one tau
LEARN_SAMPLES = 64   # N = N': taus per transition for the online and the target samples
ACT_SAMPLES = 32     # K: taus averaged into Q-values
FIXED_TAUS_SEED = 0  # forward()'s K taus when none are given


def acting_taus(rng: np.random.Generator, batch: int) -> torch.Tensor:
    """(batch, ACT_SAMPLES) float32 taus in [0, 1) from the stream 2^128 draws past the rng's
    state; the rng itself is not advanced (its bit generator must be jumpable: PCG64, numpy's
    default_rng)."""
    stream = np.random.Generator(rng.bit_generator.jumped())
    return torch.from_numpy(stream.random((batch, ACT_SAMPLES), dtype=np.float32))


class IQNNetwork(QNetwork):
    def __init__(self, n_actions: int, *, dueling: bool = False, in_channels: int = STACK,
                 encoder_name: str = "nature") -> None:
        super().__init__(n_actions, dueling=dueling, in_channels=in_channels,
                         encoder_name=encoder_name)
        self.tau_embedding = nn.Linear(EMBEDDING_SIZE, self.n_features)
        # not in the state_dict: constants, rebuilt with the network
        self.register_buffer("frequencies", math.pi * torch.arange(EMBEDDING_SIZE,
                                                                   dtype=torch.float32),
                             persistent=False)
        fixed = torch.rand(1, ACT_SAMPLES, generator=torch.Generator().manual_seed(FIXED_TAUS_SEED))
        self.register_buffer("fixed_taus", fixed, persistent=False)

    def embed(self, taus: torch.Tensor) -> torch.Tensor:
        """phi(tau): (B, T) taus -> (B, T, n_features)."""
        return torch.relu(self.tau_embedding(torch.cos(taus[..., None] * self.frequencies)))

    def at(self, states: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """(B, n_actions, T): Z_tau(s, a) for each state's T taus, taus (B, T)."""
        x = self.encode(states)[:, None, :] * self.embed(taus)  # (B, T, n_features)
        return self.streams(x).transpose(1, 2)

    def forward(self, states: torch.Tensor, taus: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_actions): the mean over taus (B, K); without them, over the fixed K taus."""
        if taus is None:
            taus = self.fixed_taus.expand(len(states), -1)
        return self.at(states, taus).mean(dim=2)

    def q_values(self, states: torch.Tensor, rng: np.random.Generator | None = None
                 ) -> torch.Tensor:
        if rng is None:
            return self(states)
        return self(states, acting_taus(rng, len(states)).to(states.device))

    def samples(self, states: torch.Tensor, rng: np.random.Generator | None = None
                ) -> torch.Tensor:
        taus = (self.fixed_taus.expand(len(states), -1) if rng is None
                else acting_taus(rng, len(states)).to(states.device))
        return self.at(states, taus)


class IQNHead(Head):
    OWN_KEYS = ("tau_embedding.weight", "tau_embedding.bias")

    @classmethod
    def network(cls, n_actions: int, settings: Mapping[str, Any]) -> IQNNetwork:
        return IQNNetwork(n_actions, dueling=settings["dueling"], encoder_name=settings["network"])

    def __init__(self, config: Config, device: torch.device) -> None:
        super().__init__(config, device)
        seed = int(np.random.SeedSequence([config.seed, seeds.IQN_TAUS]).generate_state(1)[0])
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.at: dict[QNetwork, Any] = {}  # a network's compiled at(), --compile
        self.losses: Any = quantile_losses

    def taus(self, batch: int, samples: int) -> torch.Tensor:
        """(batch, samples) taus in [0, 1) from the learning generator."""
        return torch.rand(batch, samples, generator=self.generator, device=self.device)

    def compile(self, networks: Sequence[QNetwork]) -> None:
        self.at = {net: torch.compile(net.at, dynamic=False) for net in networks}
        self.losses = torch.compile(quantile_losses, dynamic=False)

    def values(self, network: QNetwork, states: torch.Tensor) -> Samples:
        taus = self.taus(len(states), LEARN_SAMPLES)
        return Samples(self.at.get(network, network.at)(states, taus), taus)

    def q_values(self, network: QNetwork, states: torch.Tensor) -> torch.Tensor:
        return network(states, self.taus(len(states), ACT_SAMPLES))

    def td_losses(self, chosen: torch.Tensor, levels: torch.Tensor | None,
                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.losses(chosen, targets, levels)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
