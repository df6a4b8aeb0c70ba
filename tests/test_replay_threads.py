"""One thread appends while another samples: every sample stays consistent, nothing crashes.

Frames encode their own frame number in 4 bytes, so a sampled state can be checked without a
reference: in one long episode, transition i was taken in frame i, and its state is frames
max(0, i-3) .. i, its next state one frame later.
"""
import threading

import numpy as np

from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

STEPS = 20_000


def frame(number):
    return np.frombuffer(np.uint32(number).tobytes(), np.uint8).reshape(2, 2).copy()


def numbers(frames):  # (..., 2, 2) uint8 -> (...) frame numbers
    return frames.reshape(*frames.shape[:-2], 4).copy().view(np.uint32)[..., 0]


def check_concurrent(memory, sample):
    memory.start_episode(frame(0))
    for i in range(1, 64):
        memory.append(0, 0.0, frame(i), False)
    errors = []

    def writer():
        try:
            for i in range(64, STEPS):
                memory.append(0, 0.0, frame(i), False)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    samples = 0
    while thread.is_alive() or samples == 0:
        batch = sample()
        ids = batch.ids.astype(np.int64)
        offsets = np.arange(-3, 1)
        expected_states = np.maximum(ids[:, None] + offsets, 0)
        assert np.array_equal(numbers(batch.states), expected_states)
        assert np.array_equal(numbers(batch.next_states), np.maximum(ids[:, None] + offsets + 1, 0))
        samples += 1
    thread.join()
    assert not errors, errors
    assert memory.appended == STEPS - 1 and samples > 1
    memory.check_invariants()


def test_uniform_sampling_while_another_thread_appends():
    memory = ReplayMemory(5_000, frame_shape=(2, 2), stack=4)
    check_concurrent(memory, lambda: memory.sample(64))


def test_prioritized_sampling_and_updates_while_another_thread_appends():
    memory = PrioritizedReplayMemory(5_000, frame_shape=(2, 2), stack=4)
    rng = np.random.default_rng(0)

    def sample():
        batch = memory.sample(64, 0.5)
        memory.update_priorities(batch.ids, rng.random(64))
        return batch

    check_concurrent(memory, sample)
