"""Batches for the learning tests (test_agent, test_heads, test_losses): what the replay
memory's sample() gives, made from a seeded numpy rng so each test sees the same numbers."""

from types import SimpleNamespace

import numpy as np


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
