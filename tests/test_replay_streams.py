"""The multi-stream memory (streams=N): batched appends, per-stream calls, errors, snapshots.

Correctness of what is sampled with several streams is held against the reference
model in test_replay_reference.py; this module covers the API around it.
"""
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import test_replay_properties as properties
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory
from test_replay_snapshot import assert_same_batches, checksum

SHAPE = (3, 4)
DATA = Path(__file__).parent / "data"


def make(memory_class=ReplayMemory, streams=3, capacity=40, **kwargs):
    kwargs.setdefault("stack", 3)
    return memory_class(capacity, frame_shape=SHAPE, streams=streams, seed=7, **kwargs)


def started(memory_class=ReplayMemory, streams=3, **kwargs):
    memory = make(memory_class, streams, **kwargs)
    for stream in range(streams):
        memory.start_episode(np.full(SHAPE, 100 + stream, np.uint8), stream=stream)
    return memory


def batch_args(rng, streams, end_probability=0.2):
    terminated = rng.random(streams) < end_probability
    return dict(
        actions=rng.integers(0, 6, streams).astype(np.int64),
        rewards=rng.normal(size=streams).astype(np.float32),
        frames=rng.integers(0, 256, (streams, *SHAPE), dtype=np.uint8),
        terminated=terminated,
        truncated=~terminated & (rng.random(streams) < end_probability / 2),
    )


def sample(memory, batch_size):
    return memory.sample(batch_size, 0.5) if isinstance(memory, PrioritizedReplayMemory) else memory.sample(batch_size)


def snapshot_bytes(memory, tmp_path, name="m.bin"):
    memory.save(tmp_path / name)
    return (tmp_path / name).read_bytes()


# -- append_batch and states() -----------------------------------------------------------------
@pytest.mark.parametrize("memory_class", [ReplayMemory, PrioritizedReplayMemory])
@pytest.mark.parametrize("n_step", [1, 3])
def test_append_batch_equals_per_stream_calls_in_row_order(tmp_path, memory_class, n_step):
    streams = 4
    batched, single = (started(memory_class, streams, n_step=n_step) for _ in range(2))
    rng = np.random.default_rng(0)
    for step in range(60):  # wraps the capacity of 40 six times
        args = batch_args(rng, streams)
        resets = rng.integers(0, 256, (streams, *SHAPE), dtype=np.uint8)
        batched.append_batch(**args, reset_frames=resets)
        for i in range(streams):
            single.append(int(args["actions"][i]), float(args["rewards"][i]), args["frames"][i],
                          bool(args["terminated"][i]), bool(args["truncated"][i]), stream=i)
            if args["terminated"][i] or args["truncated"][i]:
                single.start_episode(resets[i], stream=i)
        np.testing.assert_array_equal(batched.states(), single.states())
        if step % 10 == 9:
            assert_same_batches(sample(batched, 16), sample(single, 16))
            if memory_class is PrioritizedReplayMemory:
                ids = np.arange(batched.appended - 8, batched.appended)
                for memory in (batched, single):
                    memory.update_priorities(ids, np.linspace(0.5, 3.0, 8))
    assert batched.appended == single.appended == 60 * streams
    assert len(batched) == len(single)
    batched.check_invariants()
    assert snapshot_bytes(batched, tmp_path, "a.bin") == snapshot_bytes(single, tmp_path, "b.bin")


def test_rows_get_ids_in_order():
    memory = started(streams=3, stack=1)
    for step in range(4):
        memory.append_batch(np.zeros(3, np.int64), np.array([10 * step + i for i in range(3)], np.float32),
                            np.zeros((3, *SHAPE), np.uint8), np.zeros(3, bool), np.zeros(3, bool))
    batch = memory.sample(500)
    assert set(batch.ids.tolist()) == set(range(12))
    for transition_id, reward in zip(batch.ids, batch.rewards):  # id 3 * step + row has reward 10 * step + row
        assert reward == 10 * (transition_id // 3) + transition_id % 3


def test_states_are_the_newest_state_of_every_stream():
    memory = started(streams=2, stack=3)
    memory.append(0, 0.0, np.full(SHAPE, 1, np.uint8), False, stream=1)
    states = memory.states()
    assert states.shape == (2, 3, *SHAPE) and states.dtype == np.uint8
    np.testing.assert_array_equal(states[0], np.full((3, *SHAPE), 100, np.uint8))
    np.testing.assert_array_equal(states[1, :, 0, 0], [101, 101, 1])
    np.testing.assert_array_equal(states[1], memory.state(1))


def test_one_stream_states_is_state_with_a_leading_axis():
    memory = started(streams=1)
    memory.append(0, 0.0, np.full(SHAPE, 9, np.uint8), False)
    np.testing.assert_array_equal(memory.states(), memory.state()[None])
    assert memory.streams == 1


def test_reset_frames_start_only_the_rows_that_ended():
    memory = started(streams=3, stack=2)
    frames = np.stack([np.full(SHAPE, v, np.uint8) for v in (1, 2, 3)])
    resets = np.stack([np.full(SHAPE, v, np.uint8) for v in (51, 52, 53)])
    memory.append_batch(np.zeros(3, np.int64), np.zeros(3, np.float32), frames, np.array([True, False, False]),
                        np.array([False, False, True]), reset_frames=resets)
    np.testing.assert_array_equal(memory.states()[:, :, 0, 0], [[51, 51], [101, 2], [53, 53]])
    args = batch_args(np.random.default_rng(1), 3, end_probability=0.0)
    memory.append_batch(**args)  # every stream is open again
    assert memory.appended == 6


def test_without_reset_frames_an_ended_stream_must_be_restarted():
    memory = started(streams=2)
    memory.append_batch(np.zeros(2, np.int64), np.zeros(2, np.float32), np.zeros((2, *SHAPE), np.uint8),
                        np.array([False, True]), np.zeros(2, bool))
    args = batch_args(np.random.default_rng(2), 2, end_probability=0.0)
    with pytest.raises(ValueError, match="row 1: append after the episode ended on stream 1"):
        memory.append_batch(**args)
    memory.start_episode(np.zeros(SHAPE, np.uint8), stream=1)
    memory.append_batch(**args)
    assert memory.appended == 4


# -- bad input: a clear exception, nothing stored -------------------------------------------
def assert_unchanged(memory, before, tmp_path):
    appended, states, data = before
    assert memory.appended == appended
    np.testing.assert_array_equal(memory.states(), states)
    assert snapshot_bytes(memory, tmp_path, "after.bin") == data
    memory.check_invariants()


def state_of(memory, tmp_path):
    return memory.appended, memory.states(), snapshot_bytes(memory, tmp_path, "before.bin")


@pytest.mark.parametrize(
    "row, change, message",
    [
        (2, lambda a: a["actions"].__setitem__(2, -1), "row 2: action"),
        (1, lambda a: a["rewards"].__setitem__(1, np.nan), "row 1: reward"),
        (1, lambda a: a["rewards"].__setitem__(1, np.inf), "row 1: reward"),
    ],
)
def test_a_bad_row_stores_no_row(tmp_path, row, change, message):
    memory = started(PrioritizedReplayMemory, streams=3, n_step=2)
    memory.append_batch(**batch_args(np.random.default_rng(3), 3, end_probability=0.0))
    before = state_of(memory, tmp_path)
    args = batch_args(np.random.default_rng(4), 3, end_probability=0.0)
    change(args)
    with pytest.raises(ValueError, match=message):
        memory.append_batch(**args)
    assert_unchanged(memory, before, tmp_path)


def test_a_row_whose_stream_was_never_started_stores_no_row(tmp_path):
    memory = make(streams=2)
    memory.start_episode(np.zeros(SHAPE, np.uint8), stream=0)
    with pytest.raises(ValueError, match="row 1: append before start_episode on stream 1"):
        memory.append_batch(**batch_args(np.random.default_rng(5), 2, end_probability=0.0))
    assert memory.appended == 0
    memory.check_invariants()


@pytest.mark.parametrize(
    "name, bad",
    [
        ("actions", lambda a: a.astype(np.int32)),
        ("actions", lambda a: a.tolist()),
        ("rewards", lambda a: a.astype(np.float64)),
        ("frames", lambda a: a.astype(np.int16)),
        ("frames", lambda a: np.asfortranarray(a)),
        ("frames", lambda a: np.concatenate([a, a], axis=2)[:, :, ::2]),
        ("terminated", lambda a: a.astype(np.uint8)),
        ("truncated", lambda a: a.astype(np.int64)),
        ("reset_frames", lambda a: a.astype(np.float32)),
    ],
)
def test_batch_arrays_need_their_exact_dtype_and_layout(tmp_path, name, bad):
    memory = started(streams=3)
    before = state_of(memory, tmp_path)
    args = batch_args(np.random.default_rng(6), 3)
    args["reset_frames"] = np.zeros((3, *SHAPE), np.uint8)
    args[name] = bad(args[name])
    with pytest.raises(TypeError, match=name):
        memory.append_batch(**args)
    assert_unchanged(memory, before, tmp_path)


@pytest.mark.parametrize(
    "name, shape",
    [("actions", (2,)), ("rewards", (3, 1)), ("frames", (3, 4, 3)), ("frames", (2, *SHAPE)), ("terminated", (4,)),
     ("truncated", ()), ("reset_frames", (3, 3, 3))],
)
def test_batch_arrays_need_one_row_per_stream(tmp_path, name, shape):
    memory = started(streams=3)
    before = state_of(memory, tmp_path)
    args = batch_args(np.random.default_rng(7), 3)
    args["reset_frames"] = np.zeros((3, *SHAPE), np.uint8)
    args[name] = np.zeros(shape, args[name].dtype)
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        memory.append_batch(**args)
    assert_unchanged(memory, before, tmp_path)


def test_stream_index_out_of_range_is_an_index_error(tmp_path):
    memory = started(streams=2)
    before = state_of(memory, tmp_path)
    frame = np.zeros(SHAPE, np.uint8)
    for call in (lambda: memory.append(0, 0.0, frame, False, stream=2), lambda: memory.start_episode(frame, stream=-1),
                 lambda: memory.state(2)):
        with pytest.raises(IndexError, match=r"stream must be in \[0, 2\)"):
            call()
    with pytest.raises(TypeError, match="stream"):
        memory.append(0, 0.0, frame, False, stream=1.0)
    with pytest.raises(TypeError, match="stream"):
        memory.start_episode(frame, stream="1")
    assert_unchanged(memory, before, tmp_path)


def test_states_before_every_stream_has_an_observation():
    memory = make(streams=3)
    memory.start_episode(np.zeros(SHAPE, np.uint8), stream=0)
    with pytest.raises(ValueError, match="no observation yet on stream 1"):
        memory.states()
    with pytest.raises(ValueError, match="on stream 2"):
        memory.state(2)
    assert memory.state(0).shape == (3, *SHAPE)


@pytest.mark.parametrize("streams, error", [(0, ValueError), (65537, ValueError), (-1, ValueError), (2.0, TypeError)])
def test_bad_number_of_streams(streams, error):
    with pytest.raises(error, match="streams"):
        ReplayMemory(100, frame_shape=SHAPE, streams=streams)


# -- capacity over all streams -----------------------------------------------------------------
def test_pending_ids_of_an_idle_stream_leave_with_the_window():
    """Stream 0 stalls with two pending 3-step transitions; stream 1's appends push them out."""
    memory = make(PrioritizedReplayMemory, streams=2, capacity=8, stack=2, n_step=3)
    for stream in range(2):
        memory.start_episode(np.zeros(SHAPE, np.uint8), stream=stream)
    for _ in range(2):
        memory.append(0, 1.0, np.zeros(SHAPE, np.uint8), False, stream=0)
    assert len(memory) == 0
    for step in range(20):
        memory.append(0, 1.0, np.full(SHAPE, step, np.uint8), False, stream=1)
        memory.check_invariants()
    assert len(memory) == 8 - 2  # stream 1's newest two are pending; stream 0 has nothing live
    memory.append(0, 1.0, np.zeros(SHAPE, np.uint8), True, stream=0)  # stream 0 goes on where it was
    memory.start_episode(np.zeros(SHAPE, np.uint8), stream=1)  # cuts off stream 1: its pending ones become sampleable
    assert len(memory) == 8
    memory.check_invariants()
    assert all(memory.priority(i) > 0 for i in range(memory.appended - 8, memory.appended))


def test_capacity_counts_transitions_over_all_streams():
    memory = started(streams=3, capacity=20, stack=4)
    rng = np.random.default_rng(8)
    for _ in range(30):
        memory.append_batch(**batch_args(rng, 3, end_probability=0.0))
        assert len(memory) == min(memory.appended, 20)
    memory.check_invariants()
    assert set(memory.sample(1000).ids.tolist()) == set(range(90 - 20, 90))


# -- snapshots -----------------------------------------------------------------------------------
def filled(memory_class, streams, seed=9, steps=45, n_step=3):
    memory = started(memory_class, streams, n_step=n_step)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        memory.append_batch(**batch_args(rng, streams), reset_frames=rng.integers(0, 256, (streams, *SHAPE),
                                                                                  dtype=np.uint8))
    return memory


def version_of(data):
    return struct.unpack_from("<I", data, 8)[0]


@pytest.mark.parametrize("memory_class", [ReplayMemory, PrioritizedReplayMemory])
def test_round_trip_with_streams(tmp_path, memory_class):
    memory = filled(memory_class, streams=3)
    if memory_class is PrioritizedReplayMemory:
        batch = memory.sample(16, 0.5)
        memory.update_priorities(batch.ids, np.linspace(0.0, 5.0, 16))
    data = snapshot_bytes(memory, tmp_path)
    assert version_of(data) == 2
    loaded = memory_class.load(tmp_path / "m.bin")
    assert (loaded.streams, loaded.appended, len(loaded)) == (3, memory.appended, len(memory))
    np.testing.assert_array_equal(loaded.states(), memory.states())
    loaded.check_invariants()
    rng_a, rng_b = np.random.default_rng(10), np.random.default_rng(10)
    for _ in range(3):  # both continue identically
        assert_same_batches(sample(memory, 16), sample(loaded, 16))
        memory.append_batch(**batch_args(rng_a, 3), reset_frames=np.zeros((3, *SHAPE), np.uint8))
        loaded.append_batch(**batch_args(rng_b, 3), reset_frames=np.zeros((3, *SHAPE), np.uint8))
    assert snapshot_bytes(memory, tmp_path, "a.bin") == snapshot_bytes(loaded, tmp_path, "b.bin")


def fill_for_fixture(memory):
    """The sequence behind tests/data/replay-v1-*.snapshot; it uses only the single-stream API."""
    rng = np.random.default_rng(2024)
    memory.start_episode(rng.integers(0, 256, SHAPE, dtype=np.uint8))
    for step in range(40):
        terminated = step % 11 == 10
        memory.append(int(rng.integers(4)), float(rng.normal()), rng.integers(0, 256, SHAPE, dtype=np.uint8),
                      terminated, step % 17 == 16)
        if terminated or step % 17 == 16:
            memory.start_episode(rng.integers(0, 256, SHAPE, dtype=np.uint8))
        if isinstance(memory, PrioritizedReplayMemory) and step % 10 == 9:
            batch = memory.sample(8, 0.5)
            memory.update_priorities(batch.ids, np.abs(rng.normal(size=8)))
    memory.append(0, 1.0, rng.integers(0, 256, SHAPE, dtype=np.uint8), False)  # leaves pending ids
    return memory


def fixture_memory(memory_class):
    return fill_for_fixture(memory_class(24, frame_shape=SHAPE, stack=3, n_step=3, gamma=0.9, seed=11))


@pytest.mark.parametrize("memory_class, name", [(ReplayMemory, "uniform"), (PrioritizedReplayMemory, "prioritized")])
def test_a_snapshot_written_before_streams_loads_and_one_stream_writes_it_byte_for_byte(tmp_path, memory_class,
                                                                                        name):
    """tests/data/replay-v1-<kind>.snapshot were written by the build before streams existed (commit
    5214e7b) from fill_for_fixture; a one-stream memory still writes exactly those bytes."""
    old = DATA / f"replay-v1-{name}.snapshot"
    assert version_of(old.read_bytes()) == 1
    memory = fixture_memory(memory_class)
    assert snapshot_bytes(memory, tmp_path) == old.read_bytes()
    loaded = memory_class.load(old)
    assert loaded.streams == 1 and loaded.appended == memory.appended and len(loaded) == len(memory)
    loaded.check_invariants()
    for _ in range(3):
        assert_same_batches(sample(memory, 8), sample(loaded, 8))


def test_truncated_and_corrupt_stream_snapshots_raise(tmp_path):
    data = snapshot_bytes(filled(PrioritizedReplayMemory, streams=2, steps=15), tmp_path)
    for cut in [10, 100, 200, 215, 216, len(data) // 2, len(data) - 9, len(data) - 1]:
        (tmp_path / "cut.bin").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated|not a replay"):
            PrioritizedReplayMemory.load(tmp_path / "cut.bin")
    rng = np.random.default_rng(0)
    for position in rng.integers(8, len(data), 20):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        (tmp_path / "bad.bin").write_bytes(bytes(flipped))
        with pytest.raises(ValueError):
            PrioritizedReplayMemory.load(tmp_path / "bad.bin")


def forge_stream(data, streams, live, index, value):
    """Sets stream:u16[index] of a version-2 snapshot (layout in csrc/replay_memory.cc) and re-seals it."""
    header = 152 + 56 * streams
    arrays = header + 8
    stream_at = arrays + live * (8 + 4 + 4 + 1 + 1) + 2 * index
    out = bytearray(data)
    struct.pack_into("<H", out, stream_at, value)
    struct.pack_into("<Q", out, len(out) - 8, checksum(bytes(out[:-8])))
    return bytes(out)


@pytest.mark.parametrize("value", [0, 1, 3, 65535])
def test_a_forged_stream_id_is_refused(tmp_path, value):
    memory = filled(ReplayMemory, streams=3, steps=20)
    data = snapshot_bytes(memory, tmp_path)
    live = min(memory.appended, memory.capacity)
    index = live - 2  # the second newest: row 1 of the last batch, on stream 1
    (tmp_path / "same.bin").write_bytes(forge_stream(data, 3, live, index, 1))
    ReplayMemory.load(tmp_path / "same.bin").check_invariants()  # the forger itself: an unchanged file loads
    if value != 1:
        (tmp_path / "forged.bin").write_bytes(forge_stream(data, 3, live, index, value))
        with pytest.raises(ValueError, match="corrupt"):
            ReplayMemory.load(tmp_path / "forged.bin")


def test_bytes_per_transition_do_not_grow_with_streams():
    """The frame stores share one chunk budget: at equal transitions, 8 streams allocate about
    what 1 stream does (the per-stream rest is a few small chunks)."""
    nbytes = {}
    for streams in (1, 8):
        memory = ReplayMemory(4000, frame_shape=(84, 84), stack=4, streams=streams)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (streams, 84, 84), dtype=np.uint8)
        for stream in range(streams):
            memory.start_episode(frames[stream], stream=stream)
        args = dict(actions=np.zeros(streams, np.int64), rewards=np.zeros(streams, np.float32), frames=frames,
                    truncated=np.zeros(streams, bool))
        for step in range(5000 // streams):
            memory.append_batch(terminated=np.full(streams, step % 300 == 299), reset_frames=frames, **args)
        nbytes[streams] = memory.nbytes / memory.capacity
    assert nbytes[8] <= nbytes[1] * 1.06, nbytes


# -- property test: random operations over several streams ---------------------------------------
# a stream: a fraction of the memory's streams (a valid one) or, now and then, an index out of range
stream_choice = st.one_of(st.floats(0.0, 0.999), st.floats(0.0, 0.999), st.floats(0.0, 0.999), st.sampled_from([-1, 4]))
stream_append = st.tuples(st.just("append"), st.sampled_from([0, 1, 2, 3] * 3 + [-1]),
                          st.sampled_from([0.0, 1.0, -1.0] * 3 + [np.nan]),
                          st.integers(0, 255), st.sampled_from([(False, False)] * 6 + [(True, False), (False, True)]),
                          stream_choice)
stream_ops = st.one_of(  # one_of picks its branches evenly: repeats weight the common operations
    stream_append, stream_append, stream_append,
    st.tuples(st.just("start_episode"), st.integers(0, 255), stream_choice),
    st.tuples(st.just("start_episode"), st.integers(0, 255), stream_choice),
    st.tuples(st.just("append_batch"), st.integers(0, 2**32), st.booleans(),
              st.sampled_from([None] * 6 + ["actions", "rewards", "terminated", "truncated", "bad row"])),
    st.tuples(st.just("append_batch"), st.integers(0, 2**32), st.just(True), st.just(None)),
    st.tuples(st.just("states"),),
    properties.update, properties.sample_op, properties.sample_op, st.tuples(st.just("save_load"),),
)


def stream_index(memory, choice):
    return int(choice * memory.streams) if isinstance(choice, float) else choice


def apply_stream_op(memory, operation, directory):
    kind = operation[0]
    if kind == "append":
        _, action, reward, value, (terminated, truncated), stream = operation
        memory.append(action, reward, np.full(properties.SHAPE, value, np.uint8), terminated, truncated,
                      stream=stream_index(memory, stream))
    elif kind == "start_episode":
        memory.start_episode(np.full(properties.SHAPE, operation[1], np.uint8), stream=stream_index(memory, operation[2]))
    elif kind == "append_batch":
        _, seed, reset, spoil = operation
        rng = np.random.default_rng(seed)
        n = memory.streams
        terminated = rng.random(n) < 0.2
        args = dict(actions=rng.integers(0, 4, n), rewards=rng.normal(size=n).astype(np.float32),
                    frames=rng.integers(0, 256, (n, *properties.SHAPE), dtype=np.uint8), terminated=terminated,
                    truncated=~terminated & (rng.random(n) < 0.1))
        if spoil == "bad row":
            args["actions"][rng.integers(n)] = -1
        elif spoil is not None:
            args[spoil] = args[spoil].astype(np.float64 if spoil != "rewards" else np.float16)
        resets = rng.integers(0, 256, (n, *properties.SHAPE), dtype=np.uint8) if reset else None
        memory.append_batch(**args, reset_frames=resets)
    elif kind == "states":
        states = memory.states()
        assert states.shape == (memory.streams, memory.stack, *properties.SHAPE)
    else:
        return properties.apply(memory, operation, directory)
    return memory


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(config=properties.configs, streams=st.integers(1, 4), ops=st.lists(stream_ops, min_size=10, max_size=60))
def test_random_operations_on_streams_keep_every_promise(tmp_path_factory, config, streams, ops):
    """As test_replay_properties, with streams: an operation either succeeds or raises a documented
    exception (a TypeError for a wrong dtype, ValueError, IndexError) and changes no byte."""
    capacity = max(config["capacity"], config["stack"] + config["n_step"])
    common = dict(frame_shape=properties.SHAPE, stack=config["stack"], n_step=config["n_step"], seed=7,
                  streams=streams)
    memory = PrioritizedReplayMemory(capacity, **common) if config["prioritized"] else ReplayMemory(capacity, **common)
    directory = str(tmp_path_factory.mktemp("streams"))
    for operation in [("start_episode", 0, 0), *ops]:
        _, before = properties.snapshot_bytes(memory, directory, "before.bin")
        try:
            memory = apply_stream_op(memory, operation, directory)
            event(f"{operation[0]} succeeded")
        except (ValueError, IndexError, TypeError) as error:
            event(f"{operation[0]} raised {type(error).__name__}")
            assert not isinstance(error, TypeError) or operation[0] == "append_batch", error
            _, after = properties.snapshot_bytes(memory, directory, "after.bin")
            assert after == before, f"{operation} raised but changed the memory"
        memory.check_invariants()
    properties.apply(memory, ("save_load",), directory)


def test_export_log_marks_episode_starts_per_stream():
    memory = make(streams=2, capacity=100, stack=2)
    frame = np.zeros(SHAPE, np.uint8)
    memory.start_episode(frame, stream=0)
    memory.start_episode(frame, stream=1)
    steps = [(0, False, False), (1, False, False), (0, True, False), (1, False, False), (0, False, False),
             (1, False, True), (0, False, False)]  # (stream, terminated, truncated)
    for stream, terminated, truncated in steps:
        memory.append(stream, 0.0, frame, terminated, truncated, stream=stream)
        if terminated or truncated:
            memory.start_episode(frame, stream=stream)
    log = memory.export_log()
    assert log["streams"].tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert log["actions"].tolist() == [0, 1, 0, 1, 0, 1, 0]
    # id 4 starts stream 0's second episode (after id 2's terminal); id 3 is not a start although id 2 ended
    assert log["episode_start"].tolist() == [True, True, False, False, True, False, False]


@pytest.mark.parametrize("capacity", [200, 37])  # everything live; wrapped many times
def test_export_log_episode_starts_follow_each_streams_history(capacity):
    """An episode starts after a terminal or truncation on the same stream, whatever the other
    streams did in between; a wrapped memory's oldest transition of a stream starts an episode
    only if its state has no history."""
    rng = np.random.default_rng(3)
    memory = make(streams=3, capacity=capacity, stack=3)
    expected = []  # (stream, action, episode_start) of every append, in id order
    steps_in_episode = [0, 0, 0]
    for stream in range(3):
        memory.start_episode(np.full(SHAPE, stream, np.uint8), stream=stream)
    for _ in range(120):
        stream = int(rng.integers(3))
        action = int(rng.integers(6))
        ended = bool(rng.random() < 0.2)
        truncated = ended and bool(rng.random() < 0.5)
        memory.append(action, 1.0, np.full(SHAPE, action, np.uint8), ended and not truncated,
                      truncated, stream=stream)
        expected.append((stream, action, steps_in_episode[stream]))
        steps_in_episode[stream] += 1
        if ended:
            memory.start_episode(np.zeros(SHAPE, np.uint8), stream=stream)
            steps_in_episode[stream] = 0
    log = memory.export_log()
    live = expected[-capacity:]
    np.testing.assert_array_equal(log["ids"], np.arange(len(expected) - len(live), len(expected)))
    np.testing.assert_array_equal(log["streams"], [s for s, _, _ in live])
    np.testing.assert_array_equal(log["actions"], [a for _, a, _ in live])
    # stack 3: every transition's history tells whether it began its episode
    np.testing.assert_array_equal(log["episode_start"], [k == 0 for _, _, k in live])
