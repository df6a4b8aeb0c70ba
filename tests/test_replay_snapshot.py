"""save / load: same samples after loading, atomic writes, and rejected bad files."""
import os
import struct
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


# -- crafted snapshots: valid checksums, values out of range -----------------------------------
# The layout is in csrc/replay_memory.cc; these helpers rewrite header fields and frame numbers
# and recompute both checksums, as an attacker or a broken writer could.
HEADER_FIELDS = {"capacity": 16, "appended": 96, "frames_begin": 104, "frames_end": 112, "cur_frame": 136,
                 "episode_steps": 152}
HEADER_CHECKSUM_AT, ARRAYS_AT = 200, 208
MASK = (1 << 64) - 1
PRIMES = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)


def checksum(data: bytes) -> int:
    """csrc/checksum.h in Python."""
    p1, p2, p3, p5 = PRIMES
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK  # noqa: E731
    lanes = [(p1 + p2) & MASK, p2, 0, (-p1) & MASK]
    full = len(data) // 32 * 32
    for offset in range(0, full, 32):
        for lane, word in enumerate(struct.unpack_from("<4Q", data, offset)):
            lanes[lane] = rotl((lanes[lane] + word * p2) & MASK, 31) * p1 & MASK
    h = (rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) + rotl(lanes[3], 18) + len(data)) & MASK
    for byte in data[full:]:
        h = rotl(h ^ (byte * p5 & MASK), 11) * p1 & MASK
    h ^= h >> 33
    h = h * p2 & MASK
    h ^= h >> 29
    h = h * p3 & MASK
    return h ^ (h >> 32)


def forge(data: bytes, shift_frames: int = 0, **fields: int) -> bytes:
    """Sets header fields, adds shift_frames to every frame number, and re-seals the file."""
    out = bytearray(data)
    get = lambda at: struct.unpack_from("<q", out, at)[0]  # noqa: E731
    appended, capacity = get(HEADER_FIELDS["appended"]), get(HEADER_FIELDS["capacity"])
    for name in ("frames_begin", "frames_end", "cur_frame"):
        struct.pack_into("<q", out, HEADER_FIELDS[name], get(HEADER_FIELDS[name]) + shift_frames)
    for i in range(min(appended, capacity)):  # obs_frame of every live id
        struct.pack_into("<q", out, ARRAYS_AT + 8 * i, get(ARRAYS_AT + 8 * i) + shift_frames)
    for name, value in fields.items():
        struct.pack_into("<q", out, HEADER_FIELDS[name], value)
    struct.pack_into("<Q", out, HEADER_CHECKSUM_AT, checksum(bytes(out[:HEADER_CHECKSUM_AT])))
    struct.pack_into("<Q", out, len(out) - 8, checksum(bytes(out[:-8])))
    return bytes(out)


@pytest.fixture
def snapshot(tmp_path):
    """A prioritized memory that has not wrapped (so the capacity field can grow) and its file."""
    memory = fill(PrioritizedReplayMemory(64, frame_shape=(3, 3), stack=2, seed=6), 40)
    path = tmp_path / "memory.bin"
    memory.save(path)
    return memory, path.read_bytes(), tmp_path / "forged.bin"


def test_forge_rewrites_a_valid_snapshot(snapshot):
    """The forger itself: with a harmless shift of every frame number the file still loads."""
    memory, data, forged = snapshot
    forged.write_bytes(forge(data, shift_frames=1 << 40))
    loaded = PrioritizedReplayMemory.load(forged)
    loaded.check_invariants()
    assert_same_batches(memory.sample(16, 0.5), loaded.sample(16, 0.5))


@pytest.mark.parametrize("shift", [(1 << 63) - 200, (1 << 62)])
def test_frame_numbers_near_the_int64_limit_are_refused(snapshot, shift):
    """Issue 12, defect 4: such a file loaded, and the next append + sample segfaulted."""
    _, data, forged = snapshot
    forged.write_bytes(forge(data, shift_frames=shift))
    with pytest.raises(ValueError, match="corrupt"):
        PrioritizedReplayMemory.load(forged)


@pytest.mark.parametrize("capacity", [1 << 40, 1 << 36])
def test_a_huge_capacity_is_a_value_error_not_a_memory_error(snapshot, capacity):
    """Issue 12, defect 4: a crafted capacity of 2^40 gave MemoryError."""
    _, data, forged = snapshot
    forged.write_bytes(forge(data, capacity=capacity))
    with pytest.raises(ValueError, match="corrupt"):
        PrioritizedReplayMemory.load(forged)


@pytest.mark.parametrize("fields", [{"episode_steps": 1 << 62}, {"appended": 41}, {"cur_frame": -5}])
def test_inconsistent_counters_are_refused(snapshot, fields):
    _, data, forged = snapshot
    forged.write_bytes(forge(data, **fields))
    with pytest.raises(ValueError, match="corrupt|truncated"):
        PrioritizedReplayMemory.load(forged)


def test_a_path_with_a_nul_byte_is_refused(tmp_path, monkeypatch):
    """Issue 12, defect 5: save('a\\0b') wrote to 'a'."""
    monkeypatch.chdir(tmp_path)
    memory = fill(ReplayMemory(16, frame_shape=(2, 2), stack=2), 5)
    with pytest.raises(ValueError, match="NUL"):
        memory.save("a\0b")
    with pytest.raises(ValueError, match="NUL"):
        ReplayMemory.load("a\0b")
    assert list(tmp_path.iterdir()) == []


def test_loading_a_fifo_is_an_error_not_a_hang(tmp_path):
    """Issue 12, defect 5: load() of a FIFO waited forever for a writer. Run apart, so a
    regression fails the test instead of hanging the suite."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(
        f"""
        from atari_dqn.replay import ReplayMemory
        try:
            ReplayMemory.load({str(fifo)!r})
        except ValueError as error:
            print("ValueError", error)
        """
    )
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("load() of a FIFO hung")
    assert "ValueError" in result.stdout and "not a regular file" in result.stdout, result.stdout + result.stderr
    with pytest.raises(IsADirectoryError):
        ReplayMemory.load(tmp_path)


# -- snapshots written before issue 12's checks still load ---------------------------------------
DATA = os.path.join(os.path.dirname(__file__), "data")


def test_snapshots_written_by_the_version_1_code_still_load():
    """tests/data/*_v1.snapshot were written by the code of commit 5214e7b (format version 1:
    episodes ended by terminals, truncations and cut-offs, n-step, wrapped, priorities updated)."""
    prioritized = PrioritizedReplayMemory.load(os.path.join(DATA, "prioritized_v1.snapshot"))
    prioritized.check_invariants()
    assert (prioritized.appended, len(prioritized)) == (40, 15)
    top, updated = 2.0469639979351646, [1.2078121105990907, 0.9095409052751212, 1.6670923789457397]
    assert [prioritized.priority(i) for i in range(24, 31)] == [top, top, *updated, top, top]
    assert prioritized.max_priority == 2.782551102616979
    batch = prioritized.sample(6, 0.5)
    assert batch.ids.tolist() == [33, 35, 37, 38, 28, 31]
    assert batch.rewards.tolist() == [16.665000915527344, 17.65999984741211, 18.655000686645508, 9.5,
                                      14.177499771118164, 15.670000076293945]
    assert batch.weights.tolist() == pytest.approx([0.4272986352443695] * 4 + [0.4734856188297272, 1.0], rel=1e-6)
    assert int(batch.states.sum()) == 13456
    uniform = ReplayMemory.load(os.path.join(DATA, "uniform_v1.snapshot"))
    uniform.check_invariants()
    batch = uniform.sample(6)
    assert batch.ids.tolist() == [28, 38, 31, 39, 27, 33]
    assert batch.rewards.tolist() == [7.0, 9.5, 7.75, 9.75, 6.75, 8.25]
    assert int(batch.states.sum()) == 20532
