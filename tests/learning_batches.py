"""Batches and agents for the learning tests (test_agent, test_heads, test_losses): what the
replay memory's sample() gives, made from a seeded numpy rng so each test sees the same numbers,
and a seeded agent on the CPU to learn from them."""

from types import SimpleNamespace

import numpy as np
import torch

from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent


def random_batch(n_actions: int, size: int, seed: int, *, terminal_rate: float,
                 discount: float) -> SimpleNamespace:
    """size transitions: random uint8 stacks, actions in [0, n_actions), rewards in {-1, 0, 1},
    discounts 0 (a terminal) with probability terminal_rate and `discount` otherwise."""
    rng = np.random.default_rng(seed)
    frames = lambda: rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8)  # noqa: E731
    return SimpleNamespace(
        states=frames(), next_states=frames(),
        actions=rng.integers(n_actions, size=size).astype(np.int64),
        rewards=rng.choice([-1.0, 0.0, 1.0], size=size).astype(np.float32),
        discounts=np.where(rng.random(size) < terminal_rate, 0.0, discount).astype(np.float32))


def small_batch(n_actions: int, size: int = 4, seed: int = 0) -> SimpleNamespace:
    """A few 3-step transitions, a quarter of them terminal."""
    return random_batch(n_actions, size, seed, terminal_rate=0.25, discount=0.99 ** 3)


def seeded_agent(n_actions: int, **settings) -> Agent:
    """An uncompiled agent on the CPU, its networks initialised from torch seed 0."""
    torch.manual_seed(0)
    return Agent(n_actions, Config(out_dir="x", **{"compile": False, **settings}),
                 torch.device("cpu"))


def huber(u: float) -> float:
    """The Huber loss at kappa = 1 of one TD error u."""
    return 0.5 * u * u if abs(u) <= 1 else abs(u) - 0.5
