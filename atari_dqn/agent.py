"""The learner: online and target Q-networks and their optimizer. Knows no env and no memory.

act_batch() is the one place an action is chosen, in training and in evaluation alike.
Evaluation acts with the online network; training acts with the actor network: the online
network itself, or with config.overlap a copy of it from before the update in flight (at most
one update old), refreshed by sync_actor() when that update is done. learn() never touches the
actor, so acting on one thread while learning on another needs no lock.
learn() takes any batch with the replay memory's fields (states, actions, rewards, next_states,
discounts) and regresses Q(s, a) on   rewards + discounts * Q_target(next_states, a*)
with a* = argmax of Q_target (DQN) or of the online network (Double DQN). The memory folds
n-step returns and terminals into rewards and discounts (discount 0 after a terminal), so the
agent needs neither gamma nor the done flags. It never steps on a NaN or infinite loss or
gradient: it raises NonFiniteLoss and leaves the networks and the optimizer as they were.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from atari_dqn.config import Config
from atari_dqn.network import QNetwork


class Batch(Protocol):
    states: np.ndarray       # (B, stack, 84, 84) uint8
    actions: np.ndarray      # (B,) int64
    rewards: np.ndarray      # (B,) float32, clipped (n-step discounted) return
    next_states: np.ndarray  # (B, stack, 84, 84) uint8
    discounts: np.ndarray    # (B,) float32, gamma**n, 0 after a terminal


@dataclass(frozen=True)
class LearnStats:
    loss: float            # the (weighted) Huber loss before the update
    mean_q: float          # mean Q(s, a) over the batch before the update
    td_errors: np.ndarray  # (B,) float32 |target - Q(s, a)|, the new priorities


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
        self.double = config.double
        self.grad_clip_norm = config.grad_clip_norm
        # channels_last lets oneDNN skip its layout conversions: ~10-20% off an update on a CPU
        # (docs/throughput.md); it changes no result beyond float rounding. Unmeasured on GPUs.
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.online = QNetwork(n_actions, dueling=config.dueling).to(device, memory_format=layout)
        self.target = QNetwork(n_actions, dueling=config.dueling).to(device, memory_format=layout)
        self.target.requires_grad_(False)
        self.sync_target()
        self.actor = self.online
        if config.overlap:
            self.actor = copy.deepcopy(self.online).requires_grad_(False)
        if config.compile:
            # In place, so state_dict keys stay as they are; one graph per input shape and grad
            # mode (batch 1 to act, the batch to learn), never recompiled for dynamic shapes.
            for network in {id(n): n for n in (self.online, self.target, self.actor)}.values():
                network.compile(dynamic=False)
        # The same Adam, in one kernel instead of a Python loop over tensors: 4-5x faster a step.
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=config.lr,
                                          eps=config.adam_eps, fused=True)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)

    @torch.inference_mode()
    def greedy_actions(self, states: np.ndarray, *, actor: bool = False) -> np.ndarray:
        network = self.actor if actor else self.online
        return network(self._tensor(states)).argmax(dim=1).cpu().numpy()

    def act_batch(self, states: np.ndarray, epsilon: float, rng: np.random.Generator, *,
                  actor: bool = False) -> np.ndarray:
        """Epsilon-greedy actions for (N, stack, 84, 84) uint8 states: the one call through which
        training (actor=True: the actor network) and evaluation (the online network) act.

        The rng is used row by row, one uniform draw per row and a second only when that row
        explores: its use depends on nothing but epsilon, which keeps seeded runs (and resumed
        ones) identical. The network runs only if some row is greedy.
        """
        random_actions = [int(rng.integers(self.n_actions)) if rng.random() < epsilon else None
                          for _ in range(len(states))]
        if None not in random_actions:
            return np.array(random_actions, np.int64)
        greedy = self.greedy_actions(states, actor=actor)  # the whole batch: one input shape
        return np.array([g if a is None else a for a, g in zip(random_actions, greedy)], np.int64)

    def act(self, state: np.ndarray, epsilon: float, rng: np.random.Generator, *,
            actor: bool = False) -> int:
        """act_batch() on one (stack, 84, 84) state."""
        return int(self.act_batch(state[None], epsilon, rng, actor=actor)[0])

    def learn(self, batch: Batch, weights: np.ndarray | None = None) -> LearnStats:
        """One gradient step. weights: importance weights (prioritized replay) or None.

        The weights are divided by the batch's largest (as Dopamine and DQN Zoo do), so only their
        ratios within the batch count. The memory divides by the largest weight over the whole
        memory, which belongs to its lowest priority: with p near eps that made every update of
        our prioritized runs 20-250x smaller than a uniform one (docs/tuning.md).
        """
        states, next_states = self._tensor(batch.states), self._tensor(batch.next_states)
        actions = self._tensor(batch.actions).long()
        rewards, discounts = self._tensor(batch.rewards), self._tensor(batch.discounts)
        q = self.online(states).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            next_q_all = self.target(next_states)
            if self.double:
                next_actions = self.online(next_states).argmax(dim=1, keepdim=True)
            else:
                next_actions = next_q_all.argmax(dim=1, keepdim=True)
            targets = rewards + discounts * next_q_all.gather(1, next_actions).squeeze(1)
        losses = F.smooth_l1_loss(q, targets, reduction="none")  # Huber with delta 1
        if weights is not None:
            losses = losses * self._tensor(weights / weights.max())
        loss = losses.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.grad_clip_norm)
        _raise_unless_finite(loss, grad_norm)
        self.optimizer.step()
        td_errors = (targets - q.detach()).abs().cpu().numpy().astype(np.float32)
        return LearnStats(loss=float(loss.item()), mean_q=float(q.detach().mean().item()),
                          td_errors=td_errors)

    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    def sync_actor(self) -> None:
        """The actor takes the online weights (a no-op without overlap: they are one network).
        Call only while no update is in flight."""
        if self.actor is not self.online:
            self.actor.load_state_dict(self.online.state_dict())

    def state_dict(self) -> dict[str, Any]:
        state = {"online": self.online.state_dict(), "target": self.target.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.actor is not self.online:  # a checkpoint may fall between two learning steps
            state["actor"] = self.actor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's optimizer keeps the very tensors it is given; copy so two agents never share
        state = copy.deepcopy(state)
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.actor is not self.online:
            self.actor.load_state_dict(state.get("actor", state["online"]))
