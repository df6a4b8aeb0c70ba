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
