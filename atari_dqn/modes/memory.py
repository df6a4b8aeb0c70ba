"""The replay memory an online mode (one_process.py, apex.py) starts a fresh run with, as the
run's settings ask for it. A resumed run reads its memory back from the checkpoint instead."""

from __future__ import annotations

from typing import Any

from atari_dqn.config import Config, ConfigError
from atari_dqn.envs import atari as envs


def make_memory(config: Config) -> Any:
    """A new, empty ReplayMemory (PrioritizedReplayMemory with --prioritized) for config; the
    memory's own refusal of the settings becomes a ConfigError naming --memory-size."""
    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    common = dict(frame_shape=(envs.SCREEN_SIZE, envs.SCREEN_SIZE), stack=envs.STACK,
                  streams=config.streams, seed=config.seed, n_step=config.n_step,
                  gamma=config.gamma)
    try:
        if config.prioritized:
            return PrioritizedReplayMemory(config.memory_capacity_transitions,
                                           alpha=config.per_alpha, **common)
        return ReplayMemory(config.memory_capacity_transitions, **common)
    except (ValueError, MemoryError) as e:  # the memory's own checks, in case ours missed one
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--memory-size {config.memory_capacity_transitions}: "
                          f"{first_line}") from None
