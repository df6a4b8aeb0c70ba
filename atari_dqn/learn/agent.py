"""The learner: online and target Q-networks and their optimizer. Knows no env and no memory.

act_batch() is the one place an action is chosen, in training and in evaluation alike, always
with the online network (epsilon_greedy, which play and the Ape-X actors call too).
learn() takes any batch with the replay memory's fields (states, actions, rewards, next_states,
discounts) and makes one gradient step on the run's loss. The memory folds n-step returns and
terminals into rewards and discounts (discount 0 after a terminal), so the agent needs neither
gamma nor the done flags. It never steps on a NaN or infinite loss or gradient: it raises
NonFiniteLoss and leaves the networks and the optimizer as they were.

What is learned is made of parts (atari_dqn/learn/parts.py, registered in learn/registry.py):
the head (--head: scalar, quantile, iqn) builds the networks and gives their samples, the Q-values
a target chooses by, the TD loss and the priorities; the loss terms (td or munchausen, cql, bc)
each add to the loss. learn() knows none of them by name.

With config.augment both states and next states are randomly shifted (atari_dqn/learn/augment.py),
each draw independent, from a torch.Generator seeded from the run's seed and kept in
state_dict(), so a resumed run draws what an uninterrupted one draws (as is a head's own
generator: IQN's taus).
reset() is BBF's shrink-and-perturb of the online network (Schwarzer et al. 2023; Ash and Adams
2020), see its docstring.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from atari_dqn import seeds
from atari_dqn.config import Config
from atari_dqn.learn import registry
from atari_dqn.learn.augment import random_shift
from atari_dqn.learn.network import QNetwork
from atari_dqn.learn.parts import Part, Step

SHRINK = 0.5        # reset(): encoder weights <- SHRINK * weights + PERTURB * fresh weights (BBF)
PERTURB = 0.5


class Batch(Protocol):
    states: np.ndarray       # (B, stack, 84, 84) uint8
    actions: np.ndarray      # (B,) int64
    rewards: np.ndarray      # (B,) float32, clipped (n-step discounted) return
    next_states: np.ndarray  # (B, stack, 84, 84) uint8
    discounts: np.ndarray    # (B,) float32, gamma**n, 0 after a terminal


@dataclass(frozen=True)
class LearnStats:
    loss: float            # the loss before the update (the terms' sum)
    mean_q: float          # mean Q(s, a) over the batch before the update
    td_errors: np.ndarray  # (B,) float32 the new priorities: |target - Q(s, a)| (a distributional
                           # head: the mean over all target and predicted sample pairs of
                           # |target_j - sample_i|; behaviour cloning: its loss)


@torch.inference_mode()
def greedy_actions(network: QNetwork, states: np.ndarray, device: torch.device,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """(B,) argmax of the network's q_values() on (B, stack, 84, 84) uint8 states. rng: for a
    head that samples (IQN reads its state without advancing it); without it, forward()'s
    Q-values."""
    tensor = torch.from_numpy(np.ascontiguousarray(states)).to(device, non_blocking=True)
    return network.q_values(tensor, rng).argmax(dim=1).cpu().numpy()


def epsilon_greedy(network: QNetwork, states: np.ndarray, epsilon: float | np.ndarray,
                   rng: np.random.Generator, device: torch.device) -> np.ndarray:
    """The one way actions are chosen (training, evaluation, play, Ape-X actors): epsilon-greedy
    (N,) int64 actions for (N, stack, 84, 84) uint8 states. epsilon: one for every row, or (N,)
    one per row (Ape-X actors: each game its own).

    The rng is used row by row, one uniform draw per row and a second only when that row
    explores: its use depends on nothing but epsilon, which keeps seeded runs (and resumed ones)
    identical. The network runs only if some row is greedy, always on the whole batch (one input
    shape per batch size for a compiled network); a head that samples (IQN) takes its samples
    from the rng's state without drawing from it, so the rng's use stays as said.
    """
    epsilons = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (len(states),))
    random_actions = [int(rng.integers(network.n_actions)) if rng.random() < eps else None
                      for eps in epsilons.tolist()]
    if None not in random_actions:
        return np.array(random_actions, np.int64)
    greedy = greedy_actions(network, states, device, rng)
    return np.array([g if a is None else a for a, g in zip(random_actions, greedy)], np.int64)


class NonFiniteLoss(ArithmeticError):
    """learn() found a NaN or infinite loss or gradient and did not step: the networks and the
    optimizer are as they were before the call."""


def _raise_unless_finite(loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
    # One check for both (one device sync): any NaN or infinite TD error makes the loss so.
    values = torch.stack([loss.detach(), grad_norm.detach().to(loss.dtype)])
    if not bool(torch.isfinite(values).all()):
        loss_value, norm_value = values.tolist()
        raise NonFiniteLoss(f"loss {loss_value}, gradient norm {norm_value}")


class Agent:
    def __init__(self, n_actions: int, config: Config, device: torch.device) -> None:
        self.n_actions = n_actions
        self.device = device
        self.config = config
        self.grad_clip_norm = config.grad_clip_norm
        self.bf16 = config.precision == "bf16"  # learning only: acting stays float32
        self.head = registry.head_class(config.head)(config, device)
        self.terms = registry.loss_terms(config)
        # channels_last lets oneDNN skip its layout conversions: ~10-20% off an update on a CPU
        # (docs/throughput.md); it changes no result beyond float rounding. Unmeasured on GPUs.
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.online = network_of(n_actions, config).to(device, memory_format=layout)
        self.target = network_of(n_actions, config).to(device, memory_format=layout)
        self.target.requires_grad_(False)
        self.sync_target()
        if config.compile:
            # In place, so state_dict keys stay as they are; one graph per input shape and grad
            # mode (batch 1 to act, the batch to learn), never recompiled for dynamic shapes.
            for network in (self.online, self.target):
                network.compile(dynamic=False)
            self.head.compile((self.online, self.target))  # what its learning runs beyond forward
        self.augment_rng: torch.Generator | None = None
        if config.augment:
            seed = int(np.random.SeedSequence([config.seed, seeds.AUGMENT]).generate_state(1)[0])
            self.augment_rng = torch.Generator(device=device).manual_seed(seed)
        # The same Adam, in one kernel instead of a Python loop over tensors: 4-5x faster a step.
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=config.lr,
                                          eps=config.adam_eps, fused=True)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """array on the device; to a GPU through pinned host memory, without waiting for it."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _states(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """batch.states and batch.next_states on the device, contiguous. The memory's one-step
        batches are two views, one frame apart, of one (B, stack + 1, 84, 84) buffer (5 frames
        a transition, not 8): that buffer goes to the device once, and is viewed there again."""
        states, next_states = batch.states, batch.next_states
        frames = states.base
        stack = states.shape[1]
        if (isinstance(frames, np.ndarray) and next_states.base is frames
                and frames.shape == (len(states), stack + 1, *states.shape[2:])
                and states.strides == next_states.strides == frames.strides
                and states.ctypes.data == frames.ctypes.data
                and next_states.ctypes.data == frames.ctypes.data + frames.strides[1]):
            on_device = self._tensor(frames)
            return on_device[:, :stack].contiguous(), on_device[:, 1:].contiguous()
        return self._tensor(states), self._tensor(next_states)

    def greedy_actions(self, states: np.ndarray) -> np.ndarray:
        """The online network's forward() argmax (no rng: IQN's fixed taus)."""
        return greedy_actions(self.online, states, self.device)

    def act_batch(self, states: np.ndarray, epsilon: float | np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
        """epsilon_greedy() with the online network."""
        return epsilon_greedy(self.online, states, epsilon, rng, self.device)

    def act(self, state: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """act_batch() on one (stack, 84, 84) state."""
        return int(self.act_batch(state[None], epsilon, rng)[0])

    def learn(self, batch: Batch, weights: np.ndarray | None = None) -> LearnStats:
        """One gradient step. weights: importance weights (prioritized replay) or None.

        The weights are divided by the batch's largest (as Dopamine and DQN Zoo do), so only their
        ratios within the batch count. The memory divides by the largest weight over the whole
        memory, which belongs to its lowest priority: with p near eps that made every update of
        our prioritized runs 20-250x smaller than a uniform one (docs/tuning.md).
        """
        states, next_states = self._states(batch)
        if self.augment_rng is not None:
            states = random_shift(states, self.augment_rng)
            next_states = random_shift(next_states, self.augment_rng)
        step = Step(self.head, self.online, self.target, bf16=self.bf16, states=states,
                    actions=self._tensor(batch.actions).long(),
                    rewards=self._tensor(batch.rewards), next_states=next_states,
                    discounts=self._tensor(batch.discounts))
        parts = [term(step) for term in self.terms]
        losses = _total([part.losses for part in parts])
        if weights is not None:
            losses = losses * self._tensor(weights / weights.max())
        loss = _total([losses.mean(), *(part.penalty for part in parts)])
        priorities = _priorities(parts)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.grad_clip_norm)
        _raise_unless_finite(loss, grad_norm)
        self.optimizer.step()
        return LearnStats(loss=float(loss.item()),
                          mean_q=float(step.chosen.detach().mean(dim=1).mean().item()),
                          td_errors=priorities.cpu().numpy().astype(np.float32))

    def reset(self, step: int) -> None:
        """Shrink and perturb the online network (BBF): every encoder weight becomes
        SHRINK * weight + PERTURB * a fresh initialisation's, every other layer (the head's: value,
        advantage or head, each a hidden 512-unit layer and an output layer; IQN's tau
        embedding) is replaced by a fresh one, and Adam's
        moments and step counts are dropped for all of them (they describe the old weights).

        The fresh weights are a pure function of the run's seed and `step` (the global torch RNG
        is left untouched), so a run resumed across a reset repeats it exactly. The target
        network is left alone: it keeps the weights of the last sync, so TD targets stay those of
        the trained network until the next --target-update copies the reset one in.
        """
        seed = int(np.random.SeedSequence([self.config.seed, seeds.RESET, step])
                   .generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = dict(network_of(self.n_actions, self.config).named_parameters())
        with torch.no_grad():
            for name, param in self.online.named_parameters():
                new = fresh[name].to(param.device)
                if name.startswith("features."):
                    param.mul_(SHRINK).add_(new, alpha=PERTURB)
                else:
                    param.copy_(new)
                self.optimizer.state.pop(param, None)  # Adam starts afresh on the next step

    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    def state_dict(self) -> dict[str, Any]:
        state = {"online": self.online.state_dict(), "target": self.target.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.augment_rng is not None:
            state["augment_rng"] = self.augment_rng.get_state()
        head = self.head.state_dict()
        if head:  # only a head with state of its own: other heads' checkpoints are as before
            state["head"] = head
        return state

    def state(self) -> dict[str, Any]:
        """The agent's part of a checkpoint (checkpoint.Part): its state_dict()."""
        return self.state_dict()

    def restore(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's optimizer keeps the very tensors it is given; copy so two agents never share
        state = copy.deepcopy(state)
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.augment_rng is not None and "augment_rng" in state:
            # checkpoints from before --augment have none: the generator keeps its seeded state
            self.augment_rng.set_state(state["augment_rng"])
        if "head" in state:
            self.head.load_state_dict(state["head"])


def network_of(n_actions: int, config: Config) -> QNetwork:
    """The Q-network a run's settings describe: its head's (learn/registry.py)."""
    return registry.head_class(config.head).network(n_actions, vars(config))


def _total(terms: list[torch.Tensor | None]) -> torch.Tensor:
    """The sum of the terms that are there (one at least)."""
    present = [term for term in terms if term is not None]
    total = present[0]
    for term in present[1:]:
        total = total + term
    return total


def _priorities(parts: list[Part]) -> torch.Tensor:
    """The new priorities: those of the first term that gives them (td, munchausen or bc)."""
    return next(part.priorities for part in parts if part.priorities is not None)
