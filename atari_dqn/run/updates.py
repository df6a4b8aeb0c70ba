"""The learner's schedule: a gradient update at each learning boundary, on the loop's thread.

An update runs on a batch sampled at a learning boundary (every train_every agent steps). start()
samples, runs the update and, with prioritized replay, gives the sampled transitions their new
|TD error| priorities at once: acting and learning strictly in turn. (A learner thread beside the
acting loop, --overlap, was slower on the 2-core CPU, the only machine it could be measured
on, and was removed: docs/throughput.md.)

Priorities can still be pending: a checkpoint of an --overlap run holds those of the update it
was stopped after (pending_priorities). They are applied at the next finish() (start() begins
with one), where the overlapped run applied them, and checkpointed again until then.
They are a part of the checkpoint (PendingPriorities, with state()/restore()), which a Source
restores before the loop starts and hands to Updates, which applies them.

Sample-ahead (opt-in, `ahead`: only the distributed learner, atari_dqn/modes/apex.py, uses it):
start(step, next_step) submits the sampling of the next update's batch to a one-thread pool before
it learns, so the C++ sample() (which releases the GIL) runs while this update does; the next
start(next_step) takes that batch. The batch is then drawn before this update's priorities are
applied and before what the caller stores meanwhile. The one-process trainer (modes/one_process.py)
never passes `ahead`: its seeded runs stay bit-identical. Invariant: at most one sample is in
flight, and start() never samples on the caller's thread while one is (it waits for it first),
so the memory's RNG draws batches in the order the updates were asked.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent, LearnStats
from atari_dqn.learn.schedule import beta


class PendingPriorities:
    """Priorities a checkpoint holds that are not applied to the memory yet (the module's doc):
    a part of the checkpoint. state(): {"ids": [...], "priorities": [...]}, or None when none
    are pending; restore(state) takes that back; take() hands them over once, to be applied."""

    def __init__(self, state: dict[str, list] | None = None) -> None:
        self.restore(state)

    def state(self) -> dict[str, list] | None:
        if self.pending is None:
            return None
        ids, priorities = self.pending
        return {"ids": ids.tolist(), "priorities": priorities.tolist()}

    def restore(self, state: dict[str, list] | None) -> None:
        self.pending = (None if state is None else
                        (np.array(state["ids"], np.int64),
                         np.array(state["priorities"], np.float32)))

    def take(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The pending (ids, priorities), which are then no longer pending; None if none are."""
        pending, self.pending = self.pending, None
        return pending


class Updates:
    def __init__(self, agent: Agent, memory: Any, config: Config,
                 on_stats: Callable[[LearnStats], None],
                 pending: PendingPriorities | None = None,
                 ahead: ThreadPoolExecutor | None = None) -> None:
        """pending: the checkpoint's pending priorities (applied at the next finish()); ahead:
        a one-thread pool to sample the next update's batch on (see the module's doc); Updates
        owns it from then on, and close() shuts it down."""
        self.agent, self.memory, self.config, self.on_stats = agent, memory, config, on_stats
        self.pending_priorities = pending if pending is not None else PendingPriorities()
        self.ahead = ahead
        self.next: tuple[int, Future[Any]] | None = None  # (step, its batch being sampled)

    def _sample(self, step: int) -> Any:
        """The batch of the update at agent step `step` (beta is that step's, with
        --prioritized)."""
        config = self.config
        if config.prioritized:
            return self.memory.sample(config.batch_size, beta(
                step, start=config.per_beta_start, total_steps=config.total_steps))
        return self.memory.sample(config.batch_size)

    def start(self, step: int, next_step: int | None = None) -> None:
        """The update of the learning boundary at agent step `step`: finish(), sample (or take
        the batch sampled ahead for `step`), learn, then the sampled transitions' new
        priorities. With `ahead` and a next_step, the batch of the update at next_step is
        sampled on the pool meanwhile."""
        self.finish()
        if self.next is not None and self.next[0] == step:
            batch = self.next[1].result()
            self.next = None
        else:
            self.drop()  # a batch for another step: never two samples at once
            batch = self._sample(step)
        if self.ahead is not None and next_step is not None:
            self.next = (next_step, self.ahead.submit(self._sample, next_step))
        stats = self.agent.learn(batch, batch.weights)
        self.on_stats(stats)
        if self.config.prioritized:
            self.memory.update_priorities(batch.ids, stats.td_errors)

    def finish(self) -> None:
        """Apply the pending priorities, if any."""
        pending = self.pending_priorities.take()
        if pending is not None:
            self.memory.update_priorities(*pending)

    def drop(self) -> None:
        """Wait for the batch sampled ahead, if any, and discard it: before anything that must
        see the memory still (a checkpoint), or when the update it was for will not come next.
        Its draw has moved the memory's RNG on all the same."""
        if self.next is not None:
            future, self.next = self.next[1], None
            future.result()

    def close(self) -> None:
        """Drop the batch sampled ahead and shut the pool down (its thread ends)."""
        if self.ahead is not None:
            self.next = None
            self.ahead.shutdown(wait=True)

    def pending(self) -> dict[str, list] | None:
        """Priorities loaded but not yet applied (PendingPriorities.state())."""
        return self.pending_priorities.state()
