"""The learner's schedule: gradient updates at learning boundaries, on the loop's thread or
(--overlap) on a learner thread beside it.

An update runs on a batch sampled at a learning boundary (every train_every agent steps). start()
samples on the loop's thread and runs the update; with prioritized replay the sampled transitions
then get their new |TD error| priorities.

With config.overlap the update runs on a worker thread while the loop acts the next train_every
steps with the actor network (the weights from before the update), and finish() waits for it.
Everything that touches the memory (sample, append, update_priorities) happens on the loop's thread
at fixed agent steps, and the actor is synced only after finish(), so a seeded run is the same
whatever the threads' timing. Without overlap, start() does it all.

A stop between two boundaries only wait()s: the new priorities are kept (and checkpointed as
pending()) and applied where the uninterrupted run applies them, so that the transitions appended
meanwhile get the same max priority in both.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from atari_dqn.agent import Agent, LearnStats
from atari_dqn.config import Config
from atari_dqn.schedule import beta

ACTOR_THREADS = 1  # torch threads of the loop's thread while a learner thread runs


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.ones(1 << 16).sum()  # a parallel op fixes this thread's count before others change it


class Updates:
    def __init__(self, agent: Agent, memory: Any, config: Config,
                 on_stats: Callable[[LearnStats], None],
                 pending: dict[str, list] | None = None) -> None:
        self.agent, self.memory, self.config, self.on_stats = agent, memory, config, on_stats
        self.pool = None
        if config.overlap:
            # torch's thread count is per thread (OpenMP): the learner gets config.threads, the
            # loop's thread one, as a batch-1 forward gains nothing from a second thread that
            # would only spin on the learner's cores (docs/throughput.md).
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="learner",
                                           initializer=_set_threads, initargs=(config.threads,))
            self.pool.submit(torch.get_num_threads).result()  # start it before the next line
            torch.set_num_threads(ACTOR_THREADS)
        self.in_flight: tuple[np.ndarray, Future[LearnStats]] | None = None
        self.priorities = (None if pending is None else
                           (np.array(pending["ids"], np.int64),
                            np.array(pending["priorities"], np.float32)))

    def start(self, step: int) -> None:
        self.finish()
        config = self.config
        if config.prioritized:
            batch = self.memory.sample(config.batch_size, beta(
                step, start=config.per_beta_start, total_steps=config.total_steps))
        else:
            batch = self.memory.sample(config.batch_size)
        if self.pool is None:
            stats = self.agent.learn(batch, batch.weights)
            self.in_flight = (batch.ids, Future())
            self.in_flight[1].set_result(stats)
            self.finish()
        else:
            self.in_flight = (batch.ids, self.pool.submit(self.agent.learn, batch, batch.weights))

    def wait(self) -> None:
        """Wait for the update in flight, if any: then the online network is up to date."""
        if self.in_flight is None:
            return
        ids, future = self.in_flight
        self.in_flight = None
        stats = future.result()
        self.on_stats(stats)
        if self.config.prioritized:
            self.priorities = (ids, stats.td_errors)

    def finish(self) -> None:
        """wait(), then apply the update's priorities."""
        self.wait()
        if self.priorities is not None:
            self.memory.update_priorities(*self.priorities)
            self.priorities = None

    def pending(self) -> dict[str, list] | None:
        """Priorities computed but not yet applied (after wait()), for a checkpoint."""
        if self.priorities is None:
            return None
        ids, priorities = self.priorities
        return {"ids": ids.tolist(), "priorities": priorities.tolist()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
