"""Checks of a Config against this machine, made before a run writes anything: the device
exists, the learner's threads fit the cores, the full replay memory fits in the RAM available."""

from __future__ import annotations

import os

import torch

from atari_dqn.config import SCREEN_SIZE, Config, ConfigError

# A frame plus its slot's bookkeeping (and the prioritized trees): 7,112-7,144 bytes measured
# (README, Replay benchmark), rounded up to the 7,200 the memory is designed to stay under.
MEMORY_BYTES_PER_TRANSITION = SCREEN_SIZE * SCREEN_SIZE + 144
GB = 1e9


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_ram_bytes() -> int:
    """RAM that can be had now without swapping (MemAvailable), else the free pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_machine(config: Config) -> torch.device:
    """The device to train on; a ConfigError if the settings do not fit this machine."""
    device = pick_device(config.device)
    cores = usable_cores()
    if config.threads > cores:
        raise ConfigError(f"--threads {config.threads} is more than the {cores} cores this "
                          f"process may use")
    needed, available = (config.memory_capacity_transitions * MEMORY_BYTES_PER_TRANSITION,
                         available_ram_bytes())
    if needed > available and not config.allow_large_memory:
        raise ConfigError(f"--memory-size {config.memory_capacity_transitions} needs about "
                          f"{needed / GB:.1f} GB of RAM when full, but {available / GB:.1f} GB "
                          f"is available; use a smaller --memory-size, or --allow-large-memory "
                          f"to start anyway")
    return device
