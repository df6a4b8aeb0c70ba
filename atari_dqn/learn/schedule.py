"""Pure schedules of the agent step: exploration epsilon and the importance-sampling beta."""

from __future__ import annotations


def epsilon(step: int, *, start: float, end: float, decay_steps: int, warmup_steps: int) -> float:
    """1.0 (uniformly random play) for the first warmup_steps agent steps; then linear from
    start to end over decay_steps agent steps; then end."""
    if step < warmup_steps:
        return 1.0
    if decay_steps == 0:
        return end
    fraction = min(1.0, (step - warmup_steps) / decay_steps)
    return start + fraction * (end - start)


def beta(step: int, *, start: float, total_steps: int) -> float:
    """Prioritized replay's importance exponent: linear from start at step 0 to 1 at total_steps."""
    fraction = min(1.0, step / total_steps)
    return start + fraction * (1.0 - start)


APEX_EPS_BASE = 0.4   # Ape-X's actor epsilons (Horgan et al. 2018): eps_i = 0.4 ** (1 + 7 i / (N - 1))
APEX_EPS_SPREAD = 7.0


def apex_epsilons(n: int) -> list[float]:
    """The fixed epsilons of n actor games, game i: 0.4 ** (1 + 7 i / (n - 1)), from 0.4 down to
    0.4 ** 8 (about 0.00066); one game gets 0.4."""
    if n < 1:
        raise ValueError(f"apex_epsilons: need n >= 1, got {n}")
    if n == 1:
        return [APEX_EPS_BASE]
    return [APEX_EPS_BASE ** (1 + APEX_EPS_SPREAD * i / (n - 1)) for i in range(n)]


def updates_made(step: int, *, train_every_steps: int, learning_starts_steps: int) -> int:
    """The gradient updates the one-process loop (modes/one_process.py) has made after `step`
    agent steps: one at each multiple of train_every_steps above learning_starts_steps. The one
    formula: the Ape-X rate limiter paces its learner by it, and summary.py counts online runs'
    updates."""
    every = train_every_steps
    return max(0, step // every - learning_starts_steps // every)


def update_step(update: int, *, train_every_steps: int, learning_starts_steps: int) -> int:
    """The agent step update number `update` (1, 2, ...) stands for, b_update: the update-th
    multiple of train_every_steps above learning_starts_steps (updates_made's inverse:
    updates_made(update_step(u)) == u)."""
    every = train_every_steps
    return (learning_starts_steps // every + update) * every
