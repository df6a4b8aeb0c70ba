"""The snapshot file format is fixed.

tests/data/format-*.snapshot were written by the build of commit 16eee44 (before the memory's
options were declared once in csrc/replay_memory.h and load() was split) from fixture_memory()
below, which sets every option to a value other than its default and ends with pending ids,
idle streams, a cut-off episode, wrapped slots and updated priorities. Today's build must write
those files byte for byte and load them back to the same memory. The older
tests/data/replay-v1-*.snapshot (before streams) are held the same way in test_replay_streams.py.
"""
import inspect
import struct
from pathlib import Path

import numpy as np
import pytest

from atari_dqn import _replay
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory, load_snapshot
from test_replay_snapshot import assert_same_batches, checksum

DATA = Path(__file__).parent / "data"
SHAPE = (3, 4)  # not square, so a height and width swapped anywhere cannot pass unseen
FIXTURES = {  # file name: (memory class, streams); a one-stream memory writes format version 1
    "format-v1-prioritized": (PrioritizedReplayMemory, 1),
    "format-v2-uniform": (ReplayMemory, 3),
    "format-v2-prioritized": (PrioritizedReplayMemory, 3),
}


def fixture_memory(name):
    memory_class, streams = FIXTURES[name]
    options = dict(frame_shape=SHAPE, stack=3, n_step=3, gamma=0.95, seed=123, streams=streams)
    if memory_class is PrioritizedReplayMemory:
        options.update(alpha=0.7, eps=1e-3)
    memory = memory_class(30, **options)
    rng = np.random.default_rng(31)
    frame = lambda: rng.integers(0, 256, SHAPE, dtype=np.uint8)  # noqa: E731
    for stream in range(streams):
        memory.start_episode(frame(), stream=stream)
    for step in range(45):  # 45 to 135 transitions through 30 slots
        # every stream at once on even steps (when there are several), else only the first two
        active = range(streams) if step % 2 == 0 else range(min(streams, 2))
        for stream in active:
            terminated, truncated = step % 11 == 10 - stream, step % 13 == 12 - stream
            memory.append(int(rng.integers(6)), float(rng.normal()), frame(), terminated, truncated, stream=stream)
            if terminated or truncated:
                memory.start_episode(frame(), stream=stream)
        if step == 30:
            memory.start_episode(frame(), stream=streams - 1)  # cuts an episode off
        if memory_class is PrioritizedReplayMemory and step % 10 == 9:
            batch = memory.sample(8, 0.5)
            memory.update_priorities(batch.ids, np.abs(rng.normal(size=8)) * 3)
        elif step % 10 == 9:
            memory.sample(8)  # moves the saved RNG state
    return memory


def sample(memory, batch_size):
    return memory.sample(batch_size, 0.4) if isinstance(memory, PrioritizedReplayMemory) else memory.sample(batch_size)


def saved_bytes(memory, tmp_path):
    memory.save(tmp_path / "saved.bin")
    return (tmp_path / "saved.bin").read_bytes()


@pytest.mark.parametrize("name", FIXTURES)
def test_a_memory_is_saved_byte_for_byte_as_the_fixture(tmp_path, name):
    fixture = (DATA / f"{name}.snapshot").read_bytes()
    assert struct.unpack_from("<I", fixture, 8)[0] == (1 if FIXTURES[name][1] == 1 else 2)  # format version
    assert saved_bytes(fixture_memory(name), tmp_path) == fixture


@pytest.mark.parametrize("name", FIXTURES)
def test_the_fixture_loads_as_the_memory_it_was_written_from(tmp_path, name):
    path = DATA / f"{name}.snapshot"
    memory, loaded = fixture_memory(name), load_snapshot(path)
    assert type(loaded) is type(memory)
    loaded.check_invariants()
    properties = ["capacity", "frame_shape", "stack", "n_step", "gamma", "streams", "appended"]
    if isinstance(memory, PrioritizedReplayMemory):
        properties += ["alpha", "eps", "max_priority"]
        ids = range(memory.appended - memory.capacity, memory.appended)
        assert [loaded.priority(i) for i in ids] == [memory.priority(i) for i in ids]
    assert [getattr(loaded, p) for p in properties] == [getattr(memory, p) for p in properties]
    assert len(loaded) == len(memory)
    np.testing.assert_array_equal(loaded.states(), memory.states())
    assert saved_bytes(loaded, tmp_path) == path.read_bytes()  # load then save changes no byte
    for _ in range(3):  # the RNG continues where it was saved
        assert_same_batches(sample(loaded, 16), sample(memory, 16))


@pytest.mark.parametrize("name", FIXTURES)
def test_every_prefix_of_the_fixture_is_refused(tmp_path, name):
    data = (DATA / f"{name}.snapshot").read_bytes()
    cut_file = tmp_path / "cut.bin"
    for cut in range(len(data)):
        cut_file.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated|not a replay memory snapshot"):
            load_snapshot(cut_file)


@pytest.mark.parametrize("name", FIXTURES)
def test_bytes_after_the_data_are_refused(tmp_path, name):
    data = (DATA / f"{name}.snapshot").read_bytes()
    (tmp_path / "long.bin").write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="1 unexpected bytes after the data"):
        load_snapshot(tmp_path / "long.bin")


def reseal(data: bytearray, header_bytes: int) -> bytes:
    """Recomputes the header checksum (after header_bytes) and the file's final checksum."""
    struct.pack_into("<Q", data, header_bytes, checksum(bytes(data[:header_bytes])))
    struct.pack_into("<Q", data, len(data) - 8, checksum(bytes(data[:-8])))
    return bytes(data)


# Offsets in format version 2 (csrc/replay_memory.cc): magic 0, version 8, endian mark 12, the
# options from 16 (capacity height width stack n_step gamma prioritized alpha eps seed streams),
# appended 104, max_priority 112, rng 120, then 56 bytes per stream, then the header checksum.
V2_PRIORITIZED_AT, V2_HEADER_BYTES = 64, 152 + 3 * 56


@pytest.mark.parametrize("position, value, message", [
    (0, b"ATDQNRPX", "not a replay memory snapshot"),
    (8, struct.pack("<I", 3), "format version 3"),
    (12, struct.pack(">I", 0x01020304), "another byte order"),
    (V2_HEADER_BYTES, b"\xff", "header checksum mismatch"),
])
def test_a_bad_prologue_or_header_checksum_is_refused(tmp_path, position, value, message):
    data = bytearray((DATA / "format-v2-prioritized.snapshot").read_bytes())
    data[position:position + len(value)] = value
    (tmp_path / "bad.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=message):
        PrioritizedReplayMemory.load(tmp_path / "bad.bin")


@pytest.mark.parametrize("flag", [2, -1])
def test_a_prioritized_flag_other_than_0_or_1_is_refused(tmp_path, flag):
    data = bytearray((DATA / "format-v2-prioritized.snapshot").read_bytes())
    (tmp_path / "same.bin").write_bytes(reseal(data, V2_HEADER_BYTES))
    PrioritizedReplayMemory.load(tmp_path / "same.bin").check_invariants()  # resealing alone changes nothing
    struct.pack_into("<q", data, V2_PRIORITIZED_AT, flag)
    (tmp_path / "bad.bin").write_bytes(reseal(data, V2_HEADER_BYTES))
    with pytest.raises(ValueError, match="bad prioritized flag"):
        PrioritizedReplayMemory.load(tmp_path / "bad.bin")


def test_the_core_takes_the_options_by_keyword_and_reports_them():
    """The binding's keywords and properties come from the core's one list of options."""
    options = dict(capacity=20, height=3, width=4, stack=2, n_step=2, gamma=0.5, prioritized=True, alpha=0.5,
                   eps=0.01, seed=9, streams=2)
    assert [name for name, *_ in _replay.MEMORY_OPTIONS] == list(options)
    core = _replay.Memory(**options)
    assert {name: getattr(core, name) for name in options} == options
    with pytest.raises(TypeError, match="no_such_option"):
        _replay.Memory(**options, no_such_option=1)
    with pytest.raises(TypeError, match="stack must be int64"):
        _replay.Memory(**dict(options, stack=2.5))


@pytest.mark.parametrize("memory_class", [ReplayMemory, PrioritizedReplayMemory])
def test_the_python_defaults_are_the_core_s(memory_class):
    core = {name: default for name, _, default in _replay.MEMORY_OPTIONS}
    defaults = {name: parameter.default for name, parameter in inspect.signature(memory_class).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    assert defaults.pop("frame_shape") == (core["height"], core["width"])
    assert defaults and all(default == core[name] for name, default in defaults.items()), defaults
