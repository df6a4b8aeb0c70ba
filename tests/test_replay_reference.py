"""The C++ memory against the pure-Python reference model on random episode streams.

Thousands of seeded sequences: terminations, truncations, one-step episodes,
episodes cut off by start_episode, many wraparounds of a small capacity, several
stack sizes and n-step horizons. Every sampled transition must be sampleable in
the reference and equal its record bit for bit. The same with several streams:
random interleavings (some streams much busier than others, so pending ids get
evicted), episodes ending at different times on different streams, batched
appends with and without reset frames.
"""
import numpy as np
import pytest

from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory
from replay_reference import ReferenceMemory

SEQUENCES = 1200  # per memory kind


def check_against_reference(memory, reference, rng, batch_size, beta=None):
    assert len(memory) == len(reference.sampleable_ids())
    assert memory.appended == reference.appended
    started = [stream for stream, episodes in enumerate(reference.streams) if episodes]
    for stream in started:
        assert np.array_equal(memory.state(stream), reference.current_state(stream))
    if len(started) == len(reference.streams):
        assert np.array_equal(memory.states(), np.stack([reference.current_state(s) for s in started]))
    if len(memory) == 0:
        with pytest.raises(IndexError):
            memory.sample(batch_size) if beta is None else memory.sample(batch_size, beta)
        return None
    batch = memory.sample(batch_size) if beta is None else memory.sample(batch_size, beta)
    allowed = reference.sampleable_ids()
    for row, transition_id in enumerate(batch.ids):
        assert transition_id in allowed, f"id {transition_id} sampled outside {allowed}"
        record = reference.record(int(transition_id))
        assert np.array_equal(batch.states[row], record.state)
        assert np.array_equal(batch.next_states[row], record.next_state)
        assert batch.actions[row] == record.action
        assert batch.rewards[row] == record.reward  # float32 bit-equal: same arithmetic order
        assert batch.dones[row] == record.done
        assert batch.discounts[row] == record.discount
    return batch


def drive(seed, prioritized):
    rng = np.random.default_rng(seed)
    stack = int(rng.integers(1, 5))
    n_step = int(rng.integers(1, 4))
    capacity = stack + n_step + int(rng.integers(0, 12))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    gamma = float(rng.choice([0.5, 0.9, 0.99]))
    if prioritized:
        memory = PrioritizedReplayMemory(capacity, frame_shape=shape, stack=stack, seed=seed, n_step=n_step, gamma=gamma)
    else:
        memory = ReplayMemory(capacity, frame_shape=shape, stack=stack, seed=seed, n_step=n_step, gamma=gamma)
    reference = ReferenceMemory(capacity, stack, n_step, gamma)

    def frame():
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    open_episode = False
    for _ in range(int(rng.integers(20, 80))):
        if not open_episode or rng.random() < 0.03:  # a new episode, sometimes cutting one off
            f = frame()
            memory.start_episode(f)
            reference.start_episode(f)
            open_episode = True
        else:
            action, reward, f = int(rng.integers(0, 18)), float(rng.normal()), frame()
            terminated = bool(rng.random() < 0.12)
            truncated = bool(not terminated and rng.random() < 0.06)
            memory.append(action, reward, f, terminated, truncated)
            reference.append(action, reward, f, terminated, truncated)
            open_episode = not (terminated or truncated)
        if rng.random() < 0.3:
            batch = check_against_reference(memory, reference, rng, int(rng.integers(1, 9)), 0.5 if prioritized else None)
            if prioritized and batch is not None and rng.random() < 0.5:
                memory.update_priorities(batch.ids, np.abs(rng.normal(size=len(batch.ids))) * 3)
    memory.check_invariants()
    check_against_reference(memory, reference, rng, 8, 0.5 if prioritized else None)


@pytest.mark.parametrize("prioritized", [False, True], ids=["uniform", "prioritized"])
def test_random_streams_match_reference(prioritized):
    for seed in range(SEQUENCES):
        drive(seed, prioritized)


def test_long_stream_with_many_wraparounds():
    rng = np.random.default_rng(1234)
    capacity, stack = 37, 4
    memory = PrioritizedReplayMemory(capacity, frame_shape=(2, 2), stack=stack, seed=3, n_step=3, gamma=0.9)
    reference = ReferenceMemory(capacity, stack, 3, 0.9)
    for episode in range(400):  # ~40 wraparounds
        f = rng.integers(0, 256, size=(2, 2), dtype=np.uint8)
        memory.start_episode(f)
        reference.start_episode(f)
        length = int(rng.choice([1, 2, 3, 5, 8, 60]))
        for step in range(length):
            f = rng.integers(0, 256, size=(2, 2), dtype=np.uint8)
            last = step == length - 1
            terminated, truncated = (last and episode % 2 == 0), (last and episode % 2 == 1)
            memory.append(step % 4, 1.0, f, terminated, truncated)
            reference.append(step % 4, 1.0, f, terminated, truncated)
        batch = check_against_reference(memory, reference, rng, 16, 1.0)
        memory.update_priorities(batch.ids, rng.random(16))
    memory.check_invariants()
    assert reference.appended > 10 * capacity


def test_state_padding_and_episode_boundary_by_hand():
    memory = ReplayMemory(10, frame_shape=(1, 1), stack=4)
    frames = [np.full((1, 1), v, np.uint8) for v in range(10)]
    memory.start_episode(frames[0])
    np.testing.assert_array_equal(memory.state().ravel(), [0, 0, 0, 0])
    memory.append(2, 1.0, frames[1], False)
    memory.append(3, -1.0, frames[2], True)  # terminal: o2 ends the episode
    memory.start_episode(frames[5])
    memory.append(1, 0.5, frames[6], False)
    np.testing.assert_array_equal(memory.state().ravel(), [5, 5, 5, 6])
    batch = memory.sample(64)
    by_id = {int(i): row for row, i in enumerate(batch.ids)}
    assert set(by_id) == {0, 1, 2}
    expected = {  # id: (state, next_state, done, discount)
        0: ([0, 0, 0, 0], [0, 0, 0, 1], 0.0, np.float32(0.99)),
        1: ([0, 0, 0, 1], [0, 0, 1, 2], 1.0, 0.0),
        2: ([5, 5, 5, 5], [5, 5, 5, 6], 0.0, np.float32(0.99)),  # never reaches into the previous episode
    }
    for transition_id, (state, next_state, done, discount) in expected.items():
        row = by_id[transition_id]
        np.testing.assert_array_equal(batch.states[row].ravel(), state)
        np.testing.assert_array_equal(batch.next_states[row].ravel(), next_state)
        assert batch.dones[row] == done and batch.discounts[row] == discount


def test_truncated_step_keeps_true_next_state_and_no_done():
    memory = ReplayMemory(8, frame_shape=(1, 1), stack=2)
    memory.start_episode(np.full((1, 1), 1, np.uint8))
    memory.append(0, 1.0, np.full((1, 1), 2, np.uint8), terminated=False, truncated=True)
    batch = memory.sample(4)
    assert (batch.dones == 0.0).all()
    np.testing.assert_array_equal(batch.next_states[0].ravel(), [1, 2])
    with pytest.raises(ValueError, match="episode ended"):
        memory.append(0, 1.0, np.zeros((1, 1), np.uint8), False)


def test_n_step_returns_by_hand():
    memory = ReplayMemory(16, frame_shape=(1, 1), stack=1, n_step=3, gamma=0.5)
    memory.start_episode(np.zeros((1, 1), np.uint8))
    for step, reward in enumerate([1.0, 2.0, 4.0, 8.0]):
        memory.append(0, reward, np.full((1, 1), step + 1, np.uint8), terminated=step == 3)
    batch = memory.sample(200)
    got = {int(i): (float(r), float(d), int(s[0, 0, 0])) for i, r, d, s in zip(batch.ids, batch.rewards, batch.discounts, batch.next_states)}
    assert got == {
        0: (1 + 0.5 * 2 + 0.25 * 4, 0.125, 3),
        1: (2 + 0.5 * 4 + 0.25 * 8, 0.0, 4),  # reaches the terminal inside the horizon
        2: (4 + 0.5 * 8, 0.0, 4),
        3: (8.0, 0.0, 4),
    }


def test_n_step_transitions_wait_for_their_horizon():
    memory = ReplayMemory(16, frame_shape=(1, 1), stack=1, n_step=3)
    memory.start_episode(np.zeros((1, 1), np.uint8))
    for step in range(4):
        memory.append(0, 1.0, np.zeros((1, 1), np.uint8), False)
    assert len(memory) == 2  # ids 2, 3 still need later rewards
    memory.append(0, 1.0, np.zeros((1, 1), np.uint8), False, truncated=True)
    assert len(memory) == 5


def test_len_counts_transitions_up_to_capacity():
    memory = ReplayMemory(50, frame_shape=(2, 2), stack=4)
    frame = np.zeros((2, 2), np.uint8)
    appended = 0
    for episode in range(30):
        memory.start_episode(frame)
        for step in range(7):
            memory.append(0, 0.0, frame, step == 6)
            appended += 1
            assert len(memory) == min(appended, 50)
    memory.check_invariants()


# -- several streams -------------------------------------------------------------------------
MULTI_SEQUENCES = 600  # per memory kind


def drive_streams(seed, prioritized):
    rng = np.random.default_rng(seed)
    streams = int(rng.integers(1, 5))
    stack = int(rng.integers(1, 5))
    n_step = int(rng.integers(1, 4))
    capacity = stack + n_step + int(rng.integers(0, 16))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
    gamma = float(rng.choice([0.5, 0.9, 0.99]))
    kwargs = dict(frame_shape=shape, stack=stack, seed=seed, n_step=n_step, gamma=gamma, streams=streams)
    memory = (PrioritizedReplayMemory if prioritized else ReplayMemory)(capacity, **kwargs)
    reference = ReferenceMemory(capacity, stack, n_step, gamma, streams)
    busy = rng.dirichlet(np.ones(streams) * 0.7)  # some streams much busier than others
    beta = 0.5 if prioritized else None

    def frame():
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    def ending():
        terminated = bool(rng.random() < 0.12)
        return terminated, bool(not terminated and rng.random() < 0.06)

    for _ in range(int(rng.integers(30, 120))):
        all_open = all(reference.episode_open(s) for s in range(streams))
        if all_open and rng.random() < 0.25:  # one step of every stream at once
            actions = rng.integers(0, 18, streams).astype(np.int64)
            rewards = rng.normal(size=streams).astype(np.float32)
            frames = rng.integers(0, 256, size=(streams, *shape), dtype=np.uint8)
            ends = [ending() for _ in range(streams)]
            terminated = np.array([t for t, _ in ends])
            truncated = np.array([t for _, t in ends])
            resets = rng.integers(0, 256, size=(streams, *shape), dtype=np.uint8) if rng.random() < 0.5 else None
            memory.append_batch(actions, rewards, frames, terminated, truncated, resets)
            for i in range(streams):
                reference.append(int(actions[i]), float(rewards[i]), frames[i], *ends[i], stream=i)
                if resets is not None and any(ends[i]):
                    reference.start_episode(resets[i], stream=i)
        else:
            stream = int(rng.choice(streams, p=busy))
            if not reference.episode_open(stream) or rng.random() < 0.03:  # sometimes cutting one off
                f = frame()
                memory.start_episode(f, stream=stream)
                reference.start_episode(f, stream=stream)
            else:
                action, reward, f = int(rng.integers(0, 18)), float(rng.normal()), frame()
                terminated, truncated = ending()
                memory.append(action, reward, f, terminated, truncated, stream=stream)
                reference.append(action, reward, f, terminated, truncated, stream=stream)
        if rng.random() < 0.3:
            batch = check_against_reference(memory, reference, rng, int(rng.integers(1, 9)), beta)
            if prioritized and batch is not None and rng.random() < 0.5:
                memory.update_priorities(batch.ids, np.abs(rng.normal(size=len(batch.ids))) * 3)
    memory.check_invariants()
    check_against_reference(memory, reference, rng, 8, beta)
    return memory, reference


@pytest.mark.parametrize("prioritized", [False, True], ids=["uniform", "prioritized"])
def test_interleaved_streams_match_reference(prioritized):
    for seed in range(MULTI_SEQUENCES):
        drive_streams(seed, prioritized)


def test_uniform_sampling_reaches_every_sampleable_id_and_no_pending_one():
    """Pending ids lie scattered among the live ones; sampling skips exactly those."""
    for seed in range(20):
        memory, reference = drive_streams(10_000 + seed, prioritized=False)
        if len(memory) == 0:
            continue
        ids = set(memory.sample(4000).ids.tolist())
        assert ids == set(reference.sampleable_ids())


def test_long_interleaved_run_with_many_wraparounds():
    rng = np.random.default_rng(77)
    capacity, stack, streams = 41, 4, 3
    memory = PrioritizedReplayMemory(capacity, frame_shape=(2, 2), stack=stack, seed=5, n_step=3, gamma=0.9,
                                     streams=streams)
    reference = ReferenceMemory(capacity, stack, 3, 0.9, streams)
    lengths = [0] * streams  # steps left in each stream's episode
    for step in range(3000):  # ~70 wraparounds; episodes of different lengths end at different times
        stream = step % streams if step % 7 else int(rng.integers(streams))
        if lengths[stream] == 0:
            f = rng.integers(0, 256, size=(2, 2), dtype=np.uint8)
            memory.start_episode(f, stream=stream)
            reference.start_episode(f, stream=stream)
            lengths[stream] = int(rng.choice([1, 2, 3, 5, 8, 60]))
            continue
        lengths[stream] -= 1
        f = rng.integers(0, 256, size=(2, 2), dtype=np.uint8)
        terminated = lengths[stream] == 0 and stream != 1
        truncated = lengths[stream] == 0 and stream == 1
        memory.append(step % 4, 1.0, f, terminated, truncated, stream=stream)
        reference.append(step % 4, 1.0, f, terminated, truncated, stream=stream)
        if step % 10 == 0 and len(memory):
            batch = check_against_reference(memory, reference, rng, 16, 1.0)
            memory.update_priorities(batch.ids, rng.random(16))
    memory.check_invariants()
    assert reference.appended > 50 * capacity


def test_two_streams_by_hand():
    """The diagram in csrc/replay_memory.h: ids are global, states and n-step returns per stream."""
    memory = ReplayMemory(16, frame_shape=(1, 1), stack=4, n_step=2, gamma=0.5, streams=2)
    f = lambda v: np.full((1, 1), v, np.uint8)  # noqa: E731
    memory.start_episode(f(0), stream=0)
    memory.start_episode(f(20), stream=1)
    memory.append(0, 1.0, f(1), False, stream=0)  # t0
    memory.append(1, 2.0, f(21), False, stream=1)  # t1
    memory.append(0, 4.0, f(2), False, stream=0)  # t2
    memory.append(1, 8.0, f(22), False, stream=1)  # t3
    memory.append(0, 16.0, f(3), True, stream=0)  # t4: stream 0's episode ends
    memory.start_episode(f(10), stream=0)
    memory.append(1, 32.0, f(23), False, stream=1)  # t5
    memory.append(0, 64.0, f(11), False, stream=0)  # t6
    np.testing.assert_array_equal(memory.states().reshape(2, 4), [[10, 10, 10, 11], [20, 21, 22, 23]])
    assert len(memory) == 5  # t5 and t6 wait for their second step
    batch = memory.sample(300)
    got = {int(i): (s.ravel().tolist(), n.ravel().tolist(), float(r), float(d), float(c))
           for i, s, n, r, d, c in zip(batch.ids, batch.states, batch.next_states, batch.rewards, batch.dones,
                                       batch.discounts)}
    assert got == {
        0: ([0, 0, 0, 0], [0, 0, 1, 2], 1.0 + 0.5 * 4.0, 0.0, 0.25),
        1: ([20, 20, 20, 20], [20, 20, 21, 22], 2.0 + 0.5 * 8.0, 0.0, 0.25),
        2: ([0, 0, 0, 1], [0, 1, 2, 3], 4.0 + 0.5 * 16.0, 1.0, 0.0),  # reaches the terminal
        3: ([20, 20, 20, 21], [20, 21, 22, 23], 8.0 + 0.5 * 32.0, 0.0, 0.25),
        4: ([0, 0, 1, 2], [0, 1, 2, 3], 16.0, 1.0, 0.0),
    }
