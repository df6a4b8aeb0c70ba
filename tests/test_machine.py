"""Checks of the settings against this machine (issue 12, defects 8 and 9)."""

from __future__ import annotations

import pytest

from atari_dqn.config import Config, ConfigError
from atari_dqn.run import machine


def test_pick_device():
    assert machine.pick_device("cpu").type == "cpu"
    assert machine.pick_device("auto").type in ("cpu", "cuda")


def test_more_threads_than_cores_is_refused():
    cores = machine.usable_cores()
    assert machine.check_machine(Config(out_dir="x", threads=cores)).type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match=f"--threads {cores + 1} is more than the {cores} cores"):
        machine.check_machine(Config(out_dir="x", threads=cores + 1))


def test_a_memory_larger_than_the_available_ram_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setattr(machine, "available_ram_bytes", lambda: 1_000_000_000)  # 1 GB
    fits = Config(out_dir="x", memory_capacity_transitions=100_000, threads=1)  # 0.72 GB
    machine.check_machine(fits)
    too_large = Config(out_dir="x", memory_capacity_transitions=200_000, threads=1)  # 1.44 GB
    with pytest.raises(ConfigError, match=r"needs about 1\.4 GB .* 1\.0 GB is available.*"
                                          r"--allow-large-memory"):
        machine.check_machine(too_large)
    machine.check_machine(Config(out_dir="x", memory_capacity_transitions=200_000, threads=1,
                                 allow_large_memory=True))


def test_the_real_ram_is_read():
    assert machine.available_ram_bytes() > 0
