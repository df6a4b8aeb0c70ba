"""The learner: online and target Q-networks and their optimizer. Knows no env and no memory.

act_batch() is the one place an action is chosen, in training and in evaluation alike, always
with the online network.
learn() takes any batch with the replay memory's fields (states, actions, rewards, next_states,
discounts) and regresses Q(s, a) on   rewards + discounts * Q_target(next_states, a*)
with a* = argmax of Q_target (DQN) or of the online network (Double DQN). The memory folds
n-step returns and terminals into rewards and discounts (discount 0 after a terminal), so the
agent needs neither gamma nor the done flags. It never steps on a NaN or infinite loss or
gradient: it raises NonFiniteLoss and leaves the networks and the optimizer as they were.

With config.head == "quantile" (QR-DQN, Dabney et al. 2018) the networks predict N quantiles of
the return per action, and learn() regresses the chosen action's quantiles on the N target
quantiles   rewards + discounts * Z_target(next_states, a*)   with the quantile Huber loss
(kappa = 1); a* is the argmax of the mean over quantiles (of the online network with double).
With config.augment both states and next states are randomly shifted (atari_dqn/augment.py),
each draw independent, from a torch.Generator seeded from the run's seed and kept in
state_dict(), so a resumed run draws what an uninterrupted one draws.
With config.loss == "cql" (offline, Kumar et al. 2020) the loss adds
config.cql_alpha * mean(logsumexp_a Q(s, a) - Q(s, a_data)) to the TD loss (cql_penalty()); with
"bc" it is behaviour cloning, the cross-entropy of the Q-values taken as logits on the data's
actions (bc_losses()), and no TD target is computed. A quantile head's Q is the mean over its
quantiles in both.
reset() is BBF's shrink-and-perturb of the online network (Schwarzer et al. 2023; Ash and Adams
2020), see its docstring.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from atari_dqn.augment import random_shift
from atari_dqn.config import Config
from atari_dqn.network import QNetwork

HUBER_KAPPA = 1.0  # the quantile Huber loss's threshold (QR-DQN's kappa; Huber's delta)
AUGMENT_STREAM = 1  # seeds the augmentation generator apart from torch's global one (same seed)
RESET_STREAM = 2    # seeds the fresh weights of reset(), with the step
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
    loss: float            # the (weighted) Huber or quantile Huber loss before the update
    mean_q: float          # mean Q(s, a) over the batch before the update
    td_errors: np.ndarray  # (B,) float32 |target - Q(s, a)| (quantile head: the mean over all
                           # target and predicted quantile pairs of |target_j - quantile_i|);
                           # the new priorities


def quantile_huber_loss(quantiles: torch.Tensor, targets: torch.Tensor, fractions: torch.Tensor,
                        kappa: float = HUBER_KAPPA) -> torch.Tensor:
    """QR-DQN's loss per transition (Dabney et al. 2018, eq. 10), as Dopamine reduces it.

    quantiles (B, N) predicted at the levels fractions (N,) (tau_hat), targets (B, N'):
    with u_ij = targets_j - quantiles_i,
        loss = sum_i mean_j |tau_i - 1{u_ij < 0}| * huber_kappa(u_ij) / kappa      -> (B,)
    where huber_kappa(u) = u^2 / 2 for |u| <= kappa, kappa * (|u| - kappa / 2) beyond.
    """
    u = targets[:, None, :] - quantiles[:, :, None]  # (B, N, N')
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u * u, kappa * (abs_u - 0.5 * kappa))
    asymmetry = (fractions[None, :, None] - (u.detach() < 0).to(u.dtype)).abs()
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


def cql_penalty(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """CQL(H)'s regulariser (Kumar et al. 2020, eq. 4): the batch mean of
    logsumexp_a Q(s, a) - Q(s, a_data), for Q-values q_all (B, A) and the data's actions (B,).
    It is >= 0, and pushes down the Q-values of the actions the data did not take."""
    chosen = q_all.gather(1, actions[:, None]).squeeze(1)
    return (torch.logsumexp(q_all, dim=1) - chosen).mean()


def bc_losses(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Behaviour cloning per transition: the cross-entropy of softmax(q_all) (B, A), the
    Q-values read as logits, on the data's actions (B,)."""
    return F.cross_entropy(q_all, actions, reduction="none")


@torch.inference_mode()
def greedy_actions(network: QNetwork, states: np.ndarray, device: torch.device) -> np.ndarray:
    """(B,) argmax of the network's Q-values on (B, stack, 84, 84) uint8 states."""
    tensor = torch.from_numpy(np.ascontiguousarray(states)).to(device, non_blocking=True)
    return network(tensor).argmax(dim=1).cpu().numpy()


def epsilon_greedy(network: QNetwork, states: np.ndarray, epsilon: float | np.ndarray,
                   rng: np.random.Generator, device: torch.device) -> np.ndarray:
    """The one way actions are chosen (training, evaluation, play, Ape-X actors): epsilon-greedy
    (N,) int64 actions for (N, stack, 84, 84) uint8 states. epsilon: one for every row, or (N,)
    one per row (Ape-X actors: each game its own).

    The rng is used row by row, one uniform draw per row and a second only when that row
    explores: its use depends on nothing but epsilon, which keeps seeded runs (and resumed ones)
    identical. The network runs only if some row is greedy, always on the whole batch (one input
    shape per batch size for a compiled network).
    """
    epsilons = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (len(states),))
    random_actions = [int(rng.integers(network.n_actions)) if rng.random() < eps else None
                      for eps in epsilons.tolist()]
    if None not in random_actions:
        return np.array(random_actions, np.int64)
    greedy = greedy_actions(network, states, device)
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
        self.double = config.double
        self.grad_clip_norm = config.grad_clip_norm
        self.loss, self.cql_alpha = config.loss, config.cql_alpha
        self.bf16 = config.precision == "bf16"  # learning only: acting stays float32
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
        # quantiles() is not forward(), so compile() above does not cover it: learning's graph
        self.online_quantiles, self.target_quantiles = self.online.quantiles, self.target.quantiles
        self.quantile_losses = quantile_losses
        if config.compile and config.head == "quantile":
            self.online_quantiles = torch.compile(self.online.quantiles, dynamic=False)
            self.target_quantiles = torch.compile(self.target.quantiles, dynamic=False)
            self.quantile_losses = torch.compile(quantile_losses, dynamic=False)
        self.augment_rng: torch.Generator | None = None
        if config.augment:
            seed = int(np.random.SeedSequence([config.seed, AUGMENT_STREAM]).generate_state(1)[0])
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
        actions = self._tensor(batch.actions).long()
        rewards, discounts = self._tensor(batch.rewards), self._tensor(batch.discounts)
        if self.loss == "bc":  # no TD target: the next states are not looked at
            q_all = self._q_values(states)
            losses = bc_losses(q_all, actions)
            q = q_all.detach().gather(1, actions[:, None]).squeeze(1)
            td_errors = losses.detach()
        elif self.online.n_quantiles is None:
            losses, q, td_errors, q_all = self._scalar_losses(states, actions, rewards,
                                                              next_states, discounts)
        else:
            losses, q, td_errors, q_all = self._quantile_losses(states, actions, rewards,
                                                                next_states, discounts)
        if weights is not None:
            losses = losses * self._tensor(weights / weights.max())
        loss = losses.mean()
        if self.loss == "cql":
            loss = loss + self.cql_alpha * cql_penalty(q_all, actions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.grad_clip_norm)
        _raise_unless_finite(loss, grad_norm)
        self.optimizer.step()
        return LearnStats(loss=float(loss.item()), mean_q=float(q.mean().item()),
                          td_errors=td_errors.cpu().numpy().astype(np.float32))

    def _fp32(self, network: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor
              ) -> torch.Tensor:
        """network(states) in float32. With --precision bf16 its convolutions and matrix products
        run in bfloat16 (torch.autocast; the weights, gradients and Adam stay float32) and
        everything after its output (targets, losses, TD errors) in float32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return network(states).float()

    def _next_actions(self, next_states: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """(B, 1) a*: the argmax of the online network's Q (Double DQN) or of next_q, the target
        network's (a quantile head's Q being the mean over its quantiles)."""
        if self.double:
            return self._fp32(self.online, next_states).argmax(dim=1, keepdim=True)
        return next_q.argmax(dim=1, keepdim=True)

    def _q_values(self, states: torch.Tensor) -> torch.Tensor:
        """(B, A) the online network's Q-values, with gradients (a quantile head's: the mean of
        its quantiles)."""
        if self.online.n_quantiles is None:
            return self._fp32(self.online, states)
        return self._fp32(self.online_quantiles, states).mean(dim=2)

    def _scalar_losses(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                       next_states: torch.Tensor, discounts: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per transition: Huber loss, Q(s, a) (detached), |TD error|; and Q(s, .) (B, A)."""
        q_all = self._fp32(self.online, states)
        q = q_all.gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            next_q_all = self._fp32(self.target, next_states)
            next_actions = self._next_actions(next_states, next_q_all)
            targets = rewards + discounts * next_q_all.gather(1, next_actions).squeeze(1)
        losses = F.smooth_l1_loss(q, targets, reduction="none")  # Huber with delta 1
        q = q.detach()
        return losses, q, (targets - q).abs(), q_all

    def _quantile_losses(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                         next_states: torch.Tensor, discounts: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per transition: quantile Huber loss, Q(s, a) (detached), mean |quantile TD error|;
        and Q(s, .) (B, A), the mean of the quantiles."""
        n = self.online.n_quantiles
        quantiles = self._fp32(self.online_quantiles, states)  # (B, A, N)
        chosen = quantiles.gather(1, actions[:, None, None].expand(-1, 1, n)).squeeze(1)
        with torch.no_grad():
            next_quantiles = self._fp32(self.target_quantiles, next_states)
            next_actions = self._next_actions(next_states, next_quantiles.mean(dim=2))
            next_chosen = next_quantiles.gather(1, next_actions[:, :, None].expand(-1, 1, n))
            targets = rewards[:, None] + discounts[:, None] * next_chosen.squeeze(1)  # (B, N)
        losses, td_errors = self.quantile_losses(chosen, targets, self.online.quantile_fractions)
        return losses, chosen.detach().mean(dim=1), td_errors, quantiles.mean(dim=2)

    def reset(self, step: int) -> None:
        """Shrink and perturb the online network (BBF): every encoder weight becomes
        SHRINK * weight + PERTURB * a fresh initialisation's, the heads (value, advantage or head:
        the hidden 512-unit layer and the output layer) are replaced by fresh ones, and Adam's
        moments and step counts are dropped for all of them (they describe the old weights).

        The fresh weights are a pure function of the run's seed and `step` (the global torch RNG
        is left untouched), so a run resumed across a reset repeats it exactly. The target
        network is left alone: it keeps the weights of the last sync, so TD targets stay those of
        the trained network until the next --target-update copies the reset one in.
        """
        seed = int(np.random.SeedSequence([self.config.seed, RESET_STREAM, step])
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
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's optimizer keeps the very tensors it is given; copy so two agents never share
        state = copy.deepcopy(state)
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        # checkpoints of --overlap runs (removed) also hold an "actor" network: not needed
        if self.augment_rng is not None and "augment_rng" in state:
            # checkpoints from before --augment have none: the generator keeps its seeded state
            self.augment_rng.set_state(state["augment_rng"])


def network_of(n_actions: int, config: Config) -> QNetwork:
    """The Q-network a run's settings describe."""
    return QNetwork(n_actions, dueling=config.dueling,
                    n_quantiles=config.n_quantiles if config.head == "quantile" else None,
                    encoder_name=config.network)
