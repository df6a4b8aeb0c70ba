"""What a run's sizes cost on this machine, checked before anything is written (defects 11, 12):
the learner's networks and update, the games, the games' processes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atari_dqn.config import MAX_ACTIONS, Config, ConfigError
from atari_dqn.learn.agent import network_of
from atari_dqn.run import machine

GB = 1_000_000_000


@pytest.mark.parametrize("settings", [
    dict(), dict(n_quantiles=7, dueling=False), dict(head="scalar"),
    dict(network="impala", n_quantiles=13), dict(head="scalar", network="impala", dueling=False),
])
def test_the_parameter_count_is_the_built_networks(settings):
    config = Config(out_dir="x", **settings)
    built = sum(p.numel() for p in network_of(MAX_ACTIONS, config).parameters())
    assert machine.network_parameters(config) == built


def test_a_quantile_head_too_large_for_the_ram_is_refused_without_building_it(monkeypatch):
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 4 * GB)
    # 10,000 quantiles: 100.8 million parameters, x 5 copies x 4 bytes = 2.0 GB
    fits = Config(out_dir="x", n_quantiles=10_000, threads=1, memory_capacity_transitions=1_000)
    assert 2.0 * GB < machine.learner_bytes(fits) < 2.1 * GB
    machine.check_machine(fits)
    # uncompiled, the loss holds (32, 10,000, 10,000) float32 tensors: 12.8 GB each
    eager = dataclasses.replace(fits, compile=False)
    with pytest.raises(ConfigError, match=r"^--network nature --head quantile --quantiles 10000 "
                                          r"--batch-size 32: .* need about 91\.6 GB, but 4\.0 GB "
                                          r"of RAM beside the games is available; "
                                          r"--compile would fuse away"):
        machine.check_machine(eager)
    # --allow-large-memory is for the replay memory, which fills as a run goes: not for this
    with pytest.raises(ConfigError, match="--quantiles 10000"):
        machine.check_machine(dataclasses.replace(eager, allow_large_memory=True))


def test_a_batch_too_large_for_the_ram_is_refused(monkeypatch):
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 4 * GB)
    config = Config(out_dir="x", head="scalar", batch_size=20_000, threads=1,
                    memory_capacity_transitions=100_000)  # 20,000 x 374 KB = 7.5 GB
    with pytest.raises(ConfigError, match=r"^--network nature --head scalar --batch-size 20000: "
                                          r".* need about 7\.5 GB"):
        machine.check_machine(config)
    machine.check_machine(dataclasses.replace(config, batch_size=2_000))


def test_on_a_gpu_the_learner_is_checked_against_its_free_memory(monkeypatch):
    monkeypatch.setattr(machine, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(machine, "free_device_bytes", lambda device: 1 * GB)
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 100 * GB)
    config = Config(out_dir="x", n_quantiles=10_000, threads=1)  # 2.0 GB
    with pytest.raises(ConfigError, match=r"need about 2\.0 GB, but 1\.0 GB of the GPU's memory"):
        machine.check_machine(config)
    machine.check_machine(dataclasses.replace(config, n_quantiles=200))


def test_games_that_do_not_fit_in_the_ram_are_refused(monkeypatch):
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 1 * GB)
    config = Config(out_dir="x", envs=1_024, total_steps=1_024, eval_every_steps=1_024,
                    threads=1, memory_capacity_transitions=10_000, head="scalar", batch_size=8)
    assert machine.games_here(config) == 1_034  # 1,024 training, 10 evaluation
    with pytest.raises(ConfigError, match=r"^--envs 1024 --eval-episodes 10: 1034 games need "
                                          r"about 1\.6 GB of RAM \(1\.5 MB each\), but 1\.0 GB "
                                          r"is available$"):
        machine.check_machine(config)
    machine.check_machine(dataclasses.replace(config, envs=256))


def test_the_games_counted_are_those_made_on_this_machine():
    apex = Config(out_dir="x", actors=4, envs=2, eval_episodes=3)
    assert machine.games_here(apex) == 4 * 2 + 3  # the run's own Ray: its actors play here
    assert machine.games_here(dataclasses.replace(apex, ray_address="auto")) == 3


def test_more_env_processes_than_cores_is_refused():
    cores = machine.usable_cores()
    config = Config(out_dir="x", threads=1, envs=cores, total_steps=1_000 * cores,
                    eval_every_steps=100 * cores, memory_capacity_transitions=1_000)
    machine.check_machine(dataclasses.replace(config, env_processes=cores))
    with pytest.raises(ConfigError, match=f"^--env-processes {cores + 1} is more than the "
                                          f"{cores} cores this process may use$"):
        machine.check_machine(dataclasses.replace(config, env_processes=cores + 1))
