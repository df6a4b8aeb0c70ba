"""Checks of a Config against this machine, made before a run writes anything: the device
exists, the learner's threads and the games' processes fit the cores, the games and the learner
(its networks and an update) fit in the memory available, and so does the full replay memory.

The learner and the games are checked without exception: they are allocated when the run starts.
The replay memory fills as the run goes, so --allow-large-memory may start it anyway. Each
estimate is a lower bound, so that only what cannot fit is refused."""

from __future__ import annotations

import dataclasses
import os

import torch

from atari_dqn.config import (GAME_BYTES, MAX_ACTIONS, SCREEN_SIZE, STACK, Config, ConfigError,
                              flag_of)
from atari_dqn.learn.agent import network_of

# A frame plus its slot's bookkeeping (and the prioritized trees): 7,112-7,144 bytes measured
# (README, Replay benchmark), rounded up to the 7,200 the memory is designed to stay under.
MEMORY_BYTES_PER_TRANSITION = SCREEN_SIZE * SCREEN_SIZE + 144
GB = 1e9
FLOAT32_BYTES = 4
# Each network parameter is held in float32 five times: by the online and the target network, and
# by the online one's gradient and Adam's two moments (5.9 times measured at the defaults, with
# torch's own buffers).
PARAMETER_COPIES = 5
# An update, per transition of its batch: the sampled frames (uint8, stack + 1 of them) and the
# states in float32 for each of its three network passes (online on the states; target and, with
# Double DQN, online on the next states). The activations kept for the gradient come on top: in
# all, 0.6-0.9 MB a transition was measured with the Nature encoder, 4 MB with Impala.
UPDATE_BYTES_PER_TRANSITION = ((STACK + 1) * SCREEN_SIZE**2
                               + 3 * STACK * SCREEN_SIZE**2 * FLOAT32_BYTES)
# The quantile loss without --compile holds several (batch, N, N) float32 tensors at once (the
# pairwise differences, their absolute values, the Huber terms, the asymmetry weights, and their
# gradients): 9.1 of them measured at N = 1,000 and 7.9 at N = 2,000 (batch 32, CPU). Compiled,
# the loss is fused and holds none (measured at N = 2,000).
EAGER_QUANTILE_LOSS_TENSORS = 7


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


def free_device_bytes(device: torch.device) -> int:
    """Memory that can be had now on a CUDA device."""
    return torch.cuda.mem_get_info(device)[0]


def network_parameters(config: Config, actions: int = MAX_ACTIONS) -> int:
    """The parameters of the run's Q-network on a game with `actions` actions, exactly, without
    building it: a quantile head's output layers are n_quantiles times as wide as with one
    quantile, so the count is affine in n_quantiles, and two small networks (1 and 2 quantiles,
    about 0.1 s) give it. (torch's meta device would build it without storage, but its first
    use imports for seconds.)"""
    def count(n_quantiles: int) -> int:
        small = dataclasses.replace(config, n_quantiles=n_quantiles)
        return sum(p.numel() for p in network_of(actions, small).parameters())

    if config.head != "quantile":
        return count(1)  # a scalar head has no quantiles
    one = count(1)
    return one + (config.n_quantiles - 1) * (count(2) - one)


def learner_bytes(config: Config) -> int:
    """At least what the learner allocates when the run starts and at its first update: the
    networks and their optimizer on the largest action set (MAX_ACTIONS), and an update's
    tensors."""
    needed = (PARAMETER_COPIES * FLOAT32_BYTES * network_parameters(config)
              + config.batch_size * UPDATE_BYTES_PER_TRANSITION)
    if config.head == "quantile" and not config.compile:
        needed += (EAGER_QUANTILE_LOSS_TENSORS * config.batch_size * config.n_quantiles**2
                   * FLOAT32_BYTES)
    return needed


def games_here(config: Config) -> int:
    """The games this process and its children make: the evaluation games and, unless the run
    is offline or its actors run on a Ray cluster (--ray-address, whose CPUs
    apex.connect checks), every training game (the actors' too, in the run's own Ray)."""
    training = 0 if config.offline or config.ray_address else config.streams
    return training + config.eval_episodes


def _learner_flags(config: Config) -> str:
    """The settings that size the learner, as flags."""
    names = ["network", "head", *(["n_quantiles"] if config.head == "quantile" else []),
             "batch_size"]
    return " ".join(f"{flag_of(name)} {getattr(config, name)}" for name in names)


def _eager_note(config: Config) -> str:
    if config.head == "quantile" and not config.compile:
        return "; --compile would fuse away the quantile loss's batch x N x N tensors"
    return ""


def check_machine(config: Config) -> torch.device:
    """The device to train on; a ConfigError if the settings do not fit this machine."""
    device = pick_device(config.device)
    cores = usable_cores()
    if config.threads > cores:
        raise ConfigError(f"--threads {config.threads} is more than the {cores} cores this "
                          f"process may use")
    if config.env_processes > cores:
        raise ConfigError(f"--env-processes {config.env_processes} is more than the {cores} "
                          f"cores this process may use")
    games, ram = games_here(config), available_ram_bytes()
    games_need, learner_needs = games * GAME_BYTES, learner_bytes(config)
    if games_need > ram:
        raise ConfigError(f"--envs {config.envs} --eval-episodes {config.eval_episodes}: "
                          f"{games} games need about {games_need / GB:.1f} GB of RAM "
                          f"({GAME_BYTES / 1e6:g} MB each), but {ram / GB:.1f} GB is available")
    where, free = ("the GPU's memory", free_device_bytes(device)) if device.type == "cuda" else (
        "RAM beside the games", ram - games_need)
    if learner_needs > free:
        raise ConfigError(f"{_learner_flags(config)}: the networks (on up to {MAX_ACTIONS} "
                          f"actions, with their target, gradient and Adam) and an update need "
                          f"about {learner_needs / GB:.1f} GB, but {free / GB:.1f} GB of {where} "
                          f"is available{_eager_note(config)}")
    needed, available = config.memory_capacity_transitions * MEMORY_BYTES_PER_TRANSITION, ram
    if needed > available and not config.allow_large_memory:
        raise ConfigError(f"--memory-size {config.memory_capacity_transitions} needs about "
                          f"{needed / GB:.1f} GB of RAM when full, but {available / GB:.1f} GB "
                          f"is available; use a smaller --memory-size, or --allow-large-memory "
                          f"to start anyway")
    return device
