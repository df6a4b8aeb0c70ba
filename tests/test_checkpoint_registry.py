"""The checkpoint as a registry of parts (checkpoint.save_checkpoint and load_checkpoint): each
part's state() is written under its key and handed back to its restore(); the replay memory's
file is written before the checkpoint that names it, and the old one removed only after."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from atari_dqn import policy
from atari_dqn.config import Config, ConfigError
from atari_dqn.replay import ReplayMemory
from atari_dqn.run import checkpoint
from atari_dqn.run.files import DiskError
from atari_dqn.run.progress import Progress
from atari_dqn.run.updates import PendingPriorities

FRAME = (84, 84)


class Box:
    """A part that holds a value: its state."""

    def __init__(self, value=None) -> None:
        self.value = value

    def state(self):
        return self.value

    def restore(self, state) -> None:
        self.value = state


def small_memory(frames: int) -> ReplayMemory:
    memory = ReplayMemory(16, frame_shape=FRAME, seed=5)
    memory.start_episode(np.zeros(FRAME, np.uint8))
    for i in range(frames):
        memory.append(i % 3, 1.0, np.full(FRAME, i, np.uint8), False, False)
    return memory


def parts(run, progress: Progress, memory=None, *, act_seed: int = 1, agent=None, env=None,
          pending=None) -> dict:
    """A registry with every entry an online checkpoint holds, of small parts."""
    return {
        "config": checkpoint.Fixed(dataclasses.asdict(Config(out_dir=str(run)))),
        "progress": progress,
        "agent": Box({} if agent is None else agent),
        "rng": checkpoint.Group({"torch": checkpoint.TorchRng(),
                                 "act": checkpoint.GeneratorRng(np.random.default_rng(act_seed))}),
        "env": Box([] if env is None else env),
        "replay": checkpoint.ReplayFile(run, progress, memory, prioritized=False),
        "pending_priorities": PendingPriorities(pending),
    }


def saved(run):
    return torch.load(run / checkpoint.CHECKPOINT, weights_only=True)


def test_every_part_is_written_under_its_key_and_restored_from_it(tmp_path):
    progress = Progress(step=7, game_scores=[2.0], game_steps=[3], wall_seconds=1.5)
    agent = {"online": {"w": torch.arange(3.0)}}
    written = parts(tmp_path, progress, small_memory(6), agent=agent, env=[{"ale": b"game"}],
                    pending={"ids": [1, 2], "priorities": [0.5, 2.0]})
    written["rng"].parts["act"].rng.random(3)  # a rng that has moved on
    torch_state = torch.get_rng_state()
    checkpoint.save_checkpoint(tmp_path, written)

    entries = saved(tmp_path)
    assert list(entries) == ["version", *written]  # the registry's order
    assert entries["version"] == checkpoint.CHECKPOINT_VERSION
    assert entries["progress"] == dataclasses.asdict(progress)
    assert entries["replay"] == "replay-000000007.bin"
    assert torch.equal(entries["rng"]["torch"], torch_state)
    assert entries["pending_priorities"] == {"ids": [1, 2], "priorities": [0.5, 2.0]}

    torch.manual_seed(99)  # the global rng elsewhere, as in a new process
    read = parts(tmp_path, Progress(), act_seed=2)
    checkpoint.load_checkpoint(tmp_path, read)
    assert read["progress"] == progress
    assert torch.equal(read["agent"].value["online"]["w"], agent["online"]["w"])
    assert read["env"].value == [{"ale": b"game"}]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert read["rng"].parts["act"].rng.random() == written["rng"].parts["act"].rng.random()
    assert read["pending_priorities"].state() == written["pending_priorities"].state()
    read["replay"].memory.save(tmp_path / "again.bin")
    assert ((tmp_path / "again.bin").read_bytes()
            == (tmp_path / "replay-000000007.bin").read_bytes())


def test_a_fixed_part_is_written_and_takes_nothing_back(tmp_path):
    fixed = checkpoint.Fixed({"seed": 3})
    fixed.restore({"seed": 4})
    assert fixed.state() == {"seed": 3}


def test_the_memory_is_written_before_the_checkpoint_and_the_old_one_removed_after(
        tmp_path, monkeypatch):
    progress = Progress(step=5, game_scores=[0.0], game_steps=[0])
    registry = parts(tmp_path, progress, small_memory(4))
    checkpoint.save_checkpoint(tmp_path, registry)
    real_save = checkpoint.atomic_torch_save
    seen = []

    def save(path, obj):
        seen.append(sorted(p.name for p in tmp_path.glob("replay-*.bin")))
        real_save(path, obj)

    monkeypatch.setattr(checkpoint, "atomic_torch_save", save)
    progress.step = 9
    checkpoint.save_checkpoint(tmp_path, registry)
    assert seen == [["replay-000000005.bin", "replay-000000009.bin"]]  # both, while writing
    assert sorted(p.name for p in tmp_path.glob("replay-*.bin")) == ["replay-000000009.bin"]
    assert saved(tmp_path)["replay"] == "replay-000000009.bin"


def test_a_checkpoint_that_fails_to_be_written_leaves_the_last_one_and_its_memory(
        tmp_path, monkeypatch):
    progress = Progress(step=5, game_scores=[0.0], game_steps=[0])
    registry = parts(tmp_path, progress, small_memory(4))
    checkpoint.save_checkpoint(tmp_path, registry)

    def full_disk(path, obj):
        raise DiskError(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(checkpoint, "atomic_torch_save", full_disk)
    progress.step = 9
    with pytest.raises(DiskError):
        checkpoint.save_checkpoint(tmp_path, registry)
    assert saved(tmp_path)["replay"] == "replay-000000005.bin"
    assert (tmp_path / "replay-000000005.bin").is_file()  # not removed: still named
    read = parts(tmp_path, Progress())
    checkpoint.load_checkpoint(tmp_path, read)  # and tidies the unnamed snapshot away
    assert read["progress"].step == 5 and len(read["replay"].memory) == len(registry[
        "replay"].memory)
    assert sorted(p.name for p in tmp_path.glob("replay-*.bin")) == ["replay-000000005.bin"]


def test_the_writer_refuses_a_registry_without_an_entry_every_checkpoint_holds(tmp_path):
    registry = parts(tmp_path, Progress(game_scores=[0.0]), small_memory(2))
    del registry["replay"]
    with pytest.raises(ValueError, match="no part for replay"):
        checkpoint.save_checkpoint(tmp_path, registry)
    assert not (tmp_path / checkpoint.CHECKPOINT).exists()


def test_an_entry_the_registry_names_but_the_checkpoint_lacks_is_one_line(tmp_path):
    progress = Progress(game_scores=[0.0], game_steps=[0])
    checkpoint.save_checkpoint(tmp_path, parts(tmp_path, progress, small_memory(2)))
    read = {**parts(tmp_path, Progress()), "offline": Box()}
    with pytest.raises(ConfigError, match=r"damaged \(its 'offline' entry is missing\)$"):
        checkpoint.load_checkpoint(tmp_path, read)


def test_a_part_that_cannot_take_its_state_back_is_a_damaged_checkpoint(tmp_path):
    class Refuses(Box):
        def restore(self, state) -> None:
            raise RuntimeError("size mismatch for online.w\nand more lines")

    progress = Progress(game_scores=[0.0], game_steps=[0])
    checkpoint.save_checkpoint(tmp_path, parts(tmp_path, progress, small_memory(2)))
    read = {**parts(tmp_path, Progress()), "agent": Refuses()}
    with pytest.raises(ConfigError) as caught:
        checkpoint.load_checkpoint(tmp_path, read)
    assert str(caught.value) == (f"--resume: {tmp_path / checkpoint.CHECKPOINT} is damaged "
                                 f"(size mismatch for online.w)")


def test_a_pending_priority_is_optional(tmp_path):
    """Checkpoints of offline runs, and perhaps of old releases, hold no pending_priorities."""
    progress = Progress(game_scores=[0.0], game_steps=[0])
    written = parts(tmp_path, progress, small_memory(2))
    del written["pending_priorities"]
    checkpoint.save_checkpoint(tmp_path, written)
    read = parts(tmp_path, Progress(), pending={"ids": [3], "priorities": [1.0]})
    checkpoint.load_checkpoint(tmp_path, read)
    assert read["pending_priorities"].state() is None


def test_a_checkpoints_network_is_read_through_the_migrations():
    online = {"w": torch.ones(2)}
    v1 = {"version": 1, "config": {"seed": 1},
          "agent": {"online": online, "target": online, "actor": online}}
    weights, settings = checkpoint.saved_network(v1)
    assert weights is online and settings == {"seed": 1}
    assert checkpoint.saved_network(online) is None  # a model file: no checkpoint
    with pytest.raises(ConfigError, match="format version 9"):
        checkpoint.saved_network({**v1, "version": 9})


def test_policy_refuses_a_checkpoint_of_an_unknown_version_in_one_line(tmp_path):
    torch.save({"version": 9, "config": {}, "agent": {"online": {"w": torch.ones(1)}}},
               tmp_path / "checkpoint.pt")
    with pytest.raises(policy.PolicyLoadError) as caught:
        policy.load(tmp_path / "checkpoint.pt")
    assert "format version 9" in str(caught.value) and "\n" not in str(caught.value)
