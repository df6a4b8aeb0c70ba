"""Property tests: random operation sequences, extreme priorities, alpha and eps included.

After every operation, either it raised a documented exception (ValueError or IndexError) and
the memory is byte for byte as it was (its snapshot is unchanged), or it succeeded; either way
check_invariants() holds. save/load round-trips in the middle of a sequence and at its end:
the loaded memory has the same snapshot and samples the same batches.
"""
import math
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

SHAPE = (2, 3)
DOCUMENTED = (ValueError, IndexError)
EXTREME = [0.0, 5e-324, 1e-300, 1e-10, 0.5, 1.0, 1e10, 1e100, 1e154, 1e200, 1e300, 1.7e308,
           math.inf, -math.inf, math.nan, -1.0, -0.0]

configs = st.fixed_dictionaries({
    "capacity": st.integers(2, 24),
    "stack": st.integers(1, 3),
    "n_step": st.integers(1, 3),
    "prioritized": st.sampled_from([True, True, True, False]),
    "alpha": st.sampled_from([0.0, 0.6, 1.0, 1.0, 2.0, 2.0, 7.0, 1e3]),
    "eps": st.sampled_from([1e-300, 1e-100, 1e-6, 1e-6, 1.0, 1e3]),
})
priority_values = st.one_of(st.sampled_from(EXTREME), st.floats(0.0, 1e308), st.floats(allow_nan=True))
good_append = st.tuples(st.just("append"), st.integers(0, 3), st.sampled_from([0.0, 1.0, -1.0]), st.integers(0, 255),
                        st.sampled_from([(False, False)] * 8 + [(True, False), (False, True)]))
any_append = st.tuples(st.just("append"), st.integers(-1, 4),
                       st.sampled_from([0.0, 1.0, -1.0, 3.4e38, 1e39, math.nan, math.inf]), st.integers(0, 255),
                       st.sampled_from([(False, False)] * 6 + [(True, False), (False, True)]))
update = st.tuples(st.just("update_priorities"), st.lists(st.tuples(st.floats(-0.1, 1.1), priority_values), max_size=6))
sample_op = st.tuples(st.just("sample"), st.integers(0, 9), st.sampled_from([0.0, 0.4, 1.0, 50.0, -1.0, math.nan]))
# one_of picks its branches evenly: repeats weight the common operations
operations = st.one_of(
    good_append, good_append, good_append, any_append, update, update, sample_op, sample_op,
    st.tuples(st.just("start_episode"), st.integers(0, 255)),
    st.tuples(st.just("save_load"),),
)


def snapshot_bytes(memory, directory, name):
    path = os.path.join(directory, name)
    memory.save(path)
    with open(path, "rb") as file:
        return path, file.read()


def sample(memory, batch_size, beta):
    if isinstance(memory, PrioritizedReplayMemory):
        return memory.sample(batch_size, beta)
    return memory.sample(batch_size)


def check_batch(memory, batch, batch_size):
    assert batch.ids.shape == (batch_size,)
    live_from = max(0, memory.appended - memory.capacity)
    assert ((batch.ids >= live_from) & (batch.ids < memory.appended)).all()
    if batch.weights is not None:
        assert np.isfinite(batch.weights).all() and (batch.weights >= 0).all() and (batch.weights <= 1).all()


def apply(memory, operation, directory):
    """Runs one operation; returns the memory to continue with (a loaded copy after save_load)."""
    kind = operation[0]
    if kind == "start_episode":
        memory.start_episode(np.full(SHAPE, operation[1], np.uint8))
    elif kind == "append":
        _, action, reward, value, (terminated, truncated) = operation
        memory.append(action, reward, np.full(SHAPE, value, np.uint8), terminated, truncated)
    elif kind == "sample":
        _, batch_size, beta = operation
        check_batch(memory, sample(memory, batch_size, beta), batch_size)
    elif kind == "update_priorities":
        if not isinstance(memory, PrioritizedReplayMemory):
            return memory
        # ids as fractions of the appended range, a little beyond it on both sides
        ids = np.array([math.floor(f * (memory.appended + 1)) for f, _ in operation[1]], np.int64)
        memory.update_priorities(ids, np.array([p for _, p in operation[1]], np.float64))
    elif kind == "save_load":
        path, saved = snapshot_bytes(memory, directory, "round_trip.bin")
        loaded = type(memory).load(path)
        loaded.check_invariants()
        assert snapshot_bytes(loaded, directory, "reloaded.bin")[1] == saved
        if len(memory) > 0:
            a, b = sample(memory, 4, 0.5), sample(loaded, 4, 0.5)
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.states, b.states)
            assert np.array_equal(a.rewards, b.rewards) and np.array_equal(a.discounts, b.discounts)
        return loaded
    return memory


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, ops=st.lists(operations, min_size=10, max_size=60))
def test_random_operation_sequences_keep_every_promise(config, ops):
    capacity = max(config["capacity"], config["stack"] + config["n_step"])
    common = dict(frame_shape=SHAPE, stack=config["stack"], n_step=config["n_step"], seed=7)
    try:
        if config["prioritized"]:
            memory = PrioritizedReplayMemory(capacity, alpha=config["alpha"], eps=config["eps"], **common)
        else:
            memory = ReplayMemory(capacity, **common)
    except ValueError:  # documented: eps ** alpha underflows or overflows
        assert config["prioritized"]
        floor = config["eps"] ** config["alpha"] if config["alpha"] * math.log10(config["eps"]) < 308 else math.inf
        assert not (2.3e-308 <= floor <= 1.7e308 / (2 * capacity))
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as directory:
        for operation in [("start_episode", 0), *ops]:
            _, before = snapshot_bytes(memory, directory, "before.bin")
            try:
                memory = apply(memory, operation, directory)
                event(f"{operation[0]} succeeded")
            except DOCUMENTED as error:
                event(f"{operation[0]} raised {type(error).__name__}")
                _, after = snapshot_bytes(memory, directory, "after.bin")
                assert after == before, f"{operation} raised but changed the memory"
            memory.check_invariants()
        apply(memory, ("save_load",), directory)
