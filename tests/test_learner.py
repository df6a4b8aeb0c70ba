"""The learner's schedule: an update at each learning boundary, in turn with acting."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent
from atari_dqn.learn.schedule import beta
from atari_dqn.modes.memory import make_memory
from atari_dqn.run.updates import PendingPriorities, Updates


def _weights(network):
    return [p.detach().clone() for p in network.parameters()]


def _filled_memory(config):
    memory = make_memory(config)
    rng = np.random.default_rng(0)
    memory.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    for _ in range(64):
        memory.append(int(rng.integers(4)), 1.0, rng.integers(0, 256, (84, 84), dtype=np.uint8),
                      False)
    return memory


@pytest.mark.parametrize("prioritized", [False, True])
def test_an_update_and_its_priorities_are_done_when_start_returns(prioritized):
    config = Config(out_dir="x", batch_size=8, prioritized=prioritized, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    stats = []
    updates = Updates(agent, memory, config, stats.append)
    before = _weights(agent.online)
    updates.start(step=4)
    assert len(stats) == 1 and updates.pending() is None
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(agent.online)))
    if prioritized:  # the sampled transitions have their |TD error| priorities already
        assert memory.max_priority != 1.0
    assert set(agent.state_dict()) == {"online", "target", "optimizer"}


def test_priorities_a_checkpoint_left_pending_are_kept_until_the_next_finish():
    config = Config(out_dir="x", batch_size=8, prioritized=True, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    pending = {"ids": [3, 5], "priorities": [7.0, 0.5]}
    updates = Updates(agent, memory, config, lambda stats: None,
                      PendingPriorities(pending))
    assert updates.pending() == pending and memory.max_priority == 1.0  # checkpointed again
    updates.finish()
    assert updates.pending() is None
    assert memory.max_priority == pytest.approx(7.0 + memory.eps)
    assert memory.priority(5) == pytest.approx((0.5 + memory.eps) ** memory.alpha)


# --- sample-ahead (the distributed learner's opt-in) ----------------------------------------

class RecordingMemory:
    """A fake prioritized memory: each sample() returns a new batch and records its beta, its
    thread and whether another sample() was running then."""

    def __init__(self, batch_size):
        self.batch_size, self.lock = batch_size, threading.Lock()
        self.samples, self.running, self.overlaps, self.updated = [], 0, 0, []

    def sample(self, batch_size, beta=None):
        with self.lock:
            self.overlaps += self.running
            self.running += 1
        try:
            batch = SimpleNamespace(number=len(self.samples), beta=beta,
                                    ids=np.arange(batch_size), weights=np.ones(batch_size))
            self.samples.append((beta, threading.current_thread()))
            return batch
        finally:
            with self.lock:
                self.running -= 1

    def update_priorities(self, ids, priorities):
        self.updated.append((ids, priorities))


class RecordingAgent:
    def __init__(self):
        self.learned = []  # the batches learned on, in order

    def learn(self, batch, weights):
        self.learned.append(batch)
        return SimpleNamespace(td_errors=np.full(len(batch.ids), 0.5, np.float32))


class LazyPool:
    """A pool whose jobs run only when their result is asked for: shows the order in which
    Updates waits for a batch sampled ahead and samples itself, without timing."""

    def __init__(self):
        self.shut = False

    def submit(self, fn, *args):
        future = LazyFuture()
        future.job = (fn, args)
        return future

    def shutdown(self, wait=True):
        self.shut = True


class LazyFuture(Future):
    def result(self, timeout=None):
        if not self.done():
            fn, args = self.job
            self.set_result(fn(*args))
        return super().result(timeout)


def _beta(config, step):
    return beta(step, start=config.per_beta_start, total_steps=config.total_steps)


def _recording_updates(ahead, prioritized=True):
    config = Config(out_dir="x", batch_size=8, prioritized=prioritized, total_steps=1000,
                    compile=False)
    memory, agent = RecordingMemory(config.batch_size), RecordingAgent()
    return config, memory, agent, Updates(agent, memory, config, lambda stats: None, ahead=ahead)


def test_with_ahead_an_update_learns_on_the_batch_sampled_ahead_for_its_step():
    config, memory, agent, updates = _recording_updates(
        ThreadPoolExecutor(1, thread_name_prefix="test-ahead"))
    try:
        updates.start(4, next_step=8)   # samples 4 now, 8 ahead
        updates.start(8, next_step=12)  # learns on 8's batch, samples 12 ahead
        updates.start(12)               # learns on 12's batch, nothing ahead
    finally:
        updates.close()
    main = threading.current_thread()
    assert [b for b, _ in memory.samples] == [_beta(config, s) for s in (4, 8, 12)]
    assert [t is main for _, t in memory.samples] == [True, False, False]
    assert [batch.beta for batch in agent.learned] == [_beta(config, s) for s in (4, 8, 12)]
    assert memory.overlaps == 0 and updates.next is None
    assert len(memory.updated) == 3  # each update applied its priorities


def test_a_batch_sampled_ahead_for_another_step_is_waited_for_then_dropped():
    config, memory, agent, updates = _recording_updates(LazyPool())
    updates.start(4, next_step=8)
    updates.start(12, next_step=16)  # not 8: wait for 8's sample, drop it, sample 12 now
    updates.start(16)
    assert [b for b, _ in memory.samples] == [_beta(config, s) for s in (4, 8, 12, 16)]
    assert [batch.beta for batch in agent.learned] == [_beta(config, s) for s in (4, 12, 16)]
    updates.start(20, next_step=24)
    updates.drop()  # e.g. before a checkpoint: the sample has run, its batch is gone
    assert len(memory.samples) == 6 and updates.next is None
    updates.start(24)
    assert agent.learned[-1].beta == _beta(config, 24) and len(memory.samples) == 7


def test_close_stops_the_sampling_thread():
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-ahead-close")
    config, memory, agent, updates = _recording_updates(pool, prioritized=False)
    updates.start(4, next_step=8)
    updates.close()
    worker = memory.samples[1][1]
    assert worker is not threading.current_thread() and not worker.is_alive()
    assert updates.next is None
    with pytest.raises(RuntimeError):  # shut down: no more jobs
        pool.submit(lambda: None)


def test_without_ahead_next_step_is_ignored_and_every_sample_is_made_in_turn():
    config, memory, agent, updates = _recording_updates(None)
    updates.start(4, next_step=8)
    assert len(memory.samples) == 1 and updates.next is None
    updates.start(8)
    updates.close()  # nothing to shut down
    main = threading.current_thread()
    assert [(b, t is main) for b, t in memory.samples] == [(_beta(config, 4), True),
                                                           (_beta(config, 8), True)]


def test_sample_ahead_with_a_real_memory_and_agent():
    config = Config(out_dir="x", batch_size=8, prioritized=True, compile=False)
    agent = Agent(4, config, torch.device("cpu"))
    memory = _filled_memory(config)
    stats = []
    updates = Updates(agent, memory, config, stats.append, ahead=ThreadPoolExecutor(1))
    try:
        for step in (4, 8, 12):
            updates.start(step, next_step=step + 4)
    finally:
        updates.close()
    assert len(stats) == 3 and memory.max_priority != 1.0
    memory.check_invariants()
