"""The C++ memory against the pure-Python reference model on random episode streams.

Thousands of seeded sequences: terminations, truncations, one-step episodes,
episodes cut off by start_episode, many wraparounds of a small capacity, several
stack sizes and n-step horizons. Every sampled transition must be sampleable in
the reference and equal its record bit for bit.
"""
import numpy as np
import pytest

from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory
from replay_reference import ReferenceMemory

SEQUENCES = 1200  # per memory kind


def check_against_reference(memory, reference, rng, batch_size, beta=None):
    assert len(memory) == len(reference.sampleable_ids())
    assert memory.appended == reference.appended
    if reference.episodes:
        assert np.array_equal(memory.state(), reference.current_state())
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
