"""save / load: same samples after loading, atomic writes, and rejected bad files."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory


def fill(memory, steps, seed=0):
    rng = np.random.default_rng(seed)
    shape = memory.frame_shape
    memory.start_episode(rng.integers(0, 256, shape, dtype=np.uint8))
    for step in range(steps):
        terminated = bool(rng.random() < 0.05)
        memory.append(int(rng.integers(4)), float(rng.normal()), rng.integers(0, 256, shape, dtype=np.uint8), terminated)
        if terminated:
            memory.start_episode(rng.integers(0, 256, shape, dtype=np.uint8))
    return memory


def assert_same_batches(a, b):
    for field in ("states", "actions", "rewards", "next_states", "dones", "discounts", "ids", "weights"):
        x, y = getattr(a, field), getattr(b, field)
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.mark.parametrize("n_step", [1, 3])
def test_uniform_round_trip_gives_the_same_samples(tmp_path, n_step):
    memory = fill(ReplayMemory(50, frame_shape=(6, 7), stack=4, seed=9, n_step=n_step), 180)  # wrapped 3 times
    path = tmp_path / "memory.bin"
    memory.save(path)
    loaded = ReplayMemory.load(path)
    assert len(loaded) == len(memory) and loaded.appended == memory.appended
    np.testing.assert_array_equal(loaded.state(), memory.state())
    for _ in range(5):
        assert_same_batches(memory.sample(32), loaded.sample(32))
    # both continue identically too
    for m in (memory, loaded):
        m.append(1, 1.0, np.full((6, 7), 3, np.uint8), False)
    assert_same_batches(memory.sample(32), loaded.sample(32))
    loaded.check_invariants()


def test_prioritized_round_trip_keeps_priorities(tmp_path):
    memory = fill(PrioritizedReplayMemory(64, frame_shape=(5, 5), stack=3, alpha=0.7, seed=4), 150)
    batch = memory.sample(32, 0.5)
    memory.update_priorities(batch.ids, np.linspace(0.0, 9.0, 32))
    memory.save(tmp_path / "per.bin")
    loaded = PrioritizedReplayMemory.load(tmp_path / "per.bin")
    ids = range(memory.appended - 64, memory.appended)
    assert [loaded.priority(i) for i in ids] == [memory.priority(i) for i in ids]
    assert loaded.max_priority == memory.max_priority and loaded.alpha == 0.7
    for _ in range(5):
        assert_same_batches(memory.sample(16, 0.6), loaded.sample(16, 0.6))
    loaded.check_invariants()


def test_loading_with_the_wrong_class(tmp_path):
    fill(ReplayMemory(16, frame_shape=(2, 2), stack=2), 10).save(tmp_path / "u.bin")
    fill(PrioritizedReplayMemory(16, frame_shape=(2, 2), stack=2), 10).save(tmp_path / "p.bin")
    with pytest.raises(ValueError, match="PrioritizedReplayMemory.load"):
        ReplayMemory.load(tmp_path / "p.bin")
    with pytest.raises(ValueError, match="ReplayMemory.load"):
        PrioritizedReplayMemory.load(tmp_path / "u.bin")


def test_truncated_files_raise(tmp_path):
    path = tmp_path / "memory.bin"
    fill(PrioritizedReplayMemory(32, frame_shape=(4, 4), stack=2), 40).save(path)
    data = path.read_bytes()
    for cut in [10, 100, 207, 208, 209, len(data) // 2, len(data) - 9, len(data) - 1]:  # header: 208 bytes
        (tmp_path / "cut.bin").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated|not a replay"):
            PrioritizedReplayMemory.load(tmp_path / "cut.bin")


def test_corrupt_files_raise(tmp_path):
    path = tmp_path / "memory.bin"
    fill(ReplayMemory(32, frame_shape=(4, 4), stack=2), 40).save(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for position in list(rng.integers(8, len(data), 20)) + [len(data) - 3]:
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        (tmp_path / "bad.bin").write_bytes(bytes(flipped))
        with pytest.raises(ValueError):
            ReplayMemory.load(tmp_path / "bad.bin")
    (tmp_path / "long.bin").write_bytes(bytes(data) + b"\0")
    with pytest.raises(ValueError):
        ReplayMemory.load(tmp_path / "long.bin")


def test_a_large_memory_saved_nearly_empty_loads(tmp_path):
    memory = PrioritizedReplayMemory(1_000_000, seed=3)  # the file is tiny next to the capacity
    memory.start_episode(np.zeros((84, 84), np.uint8))
    memory.append(1, 1.0, np.ones((84, 84), np.uint8), False)
    memory.save(tmp_path / "m.bin")
    loaded = PrioritizedReplayMemory.load(tmp_path / "m.bin")
    assert loaded.capacity == 1_000_000 and len(loaded) == 1
    assert_same_batches(memory.sample(4, 0.4), loaded.sample(4, 0.4))


def test_a_corrupt_header_is_caught_before_anything_is_allocated(tmp_path):
    path = tmp_path / "memory.bin"
    ReplayMemory(16, frame_shape=(2, 2), stack=2).save(path)
    data = bytearray(path.read_bytes())
    data[16 + 5] ^= 0x40  # a high byte of the capacity field: 2^46 transitions
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        ReplayMemory.load(path)


def test_foreign_and_missing_files(tmp_path):
    (tmp_path / "text.txt").write_text("hello, this is not a replay memory at all" * 20)
    (tmp_path / "empty.bin").write_bytes(b"")
    for name in ("text.txt", "empty.bin"):
        with pytest.raises(ValueError, match="not a replay memory"):
            ReplayMemory.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        ReplayMemory.load(tmp_path / "missing.bin")
    with pytest.raises(OSError):
        ReplayMemory(16, frame_shape=(2, 2), stack=2).save(tmp_path / "no-such-dir" / "m.bin")


def test_failed_save_leaves_the_old_file_whole(tmp_path):
    """A save that dies half-way (here: the file-size limit stops its writes) keeps the old snapshot."""
    path = tmp_path / "memory.bin"
    fill(ReplayMemory(64, frame_shape=(8, 8), stack=2, seed=1), 30).save(path)
    old = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_replay_snapshot import fill
        from atari_dqn.replay import ReplayMemory
        memory = fill(ReplayMemory(4000, frame_shape=(64, 64), stack=4, seed=2), 3000)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            memory.save({str(path)!r})
        except OSError as error:
            print("OSError", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "OSError" in result.stdout, result.stdout + result.stderr
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.bin"]  # no temporary file left behind
    assert ReplayMemory.load(path).appended == 30
