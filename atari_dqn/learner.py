"""The learner's schedule: a gradient update at each learning boundary, on the loop's thread.

An update runs on a batch sampled at a learning boundary (every train_every agent steps). start()
samples, runs the update and, with prioritized replay, gives the sampled transitions their new
|TD error| priorities at once: acting and learning strictly in turn. (A learner thread beside the
acting loop, --overlap, was slower on the 2-core CPU, the only machine it could be measured
on, and was removed: docs/throughput.md.)

Priorities can still be pending: a checkpoint of an --overlap run holds those of the update it
was stopped after (pending_priorities). They are applied at the next finish() (start() begins
with one), where the overlapped run applied them, and checkpointed again as pending() until then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from atari_dqn.agent import Agent, LearnStats
from atari_dqn.config import Config
from atari_dqn.schedule import beta


class Updates:
    def __init__(self, agent: Agent, memory: Any, config: Config,
                 on_stats: Callable[[LearnStats], None],
                 pending: dict[str, list] | None = None) -> None:
        self.agent, self.memory, self.config, self.on_stats = agent, memory, config, on_stats
        self.priorities = (None if pending is None else
                           (np.array(pending["ids"], np.int64),
                            np.array(pending["priorities"], np.float32)))

    def start(self, step: int) -> None:
        """The update of the learning boundary at agent step `step`: finish(), sample, learn,
        then the sampled transitions' new priorities."""
        self.finish()
        config = self.config
        if config.prioritized:
            batch = self.memory.sample(config.batch_size, beta(
                step, start=config.per_beta_start, total_steps=config.total_steps))
        else:
            batch = self.memory.sample(config.batch_size)
        stats = self.agent.learn(batch, batch.weights)
        self.on_stats(stats)
        if config.prioritized:
            self.memory.update_priorities(batch.ids, stats.td_errors)

    def finish(self) -> None:
        """Apply the pending priorities, if any."""
        if self.priorities is not None:
            self.memory.update_priorities(*self.priorities)
            self.priorities = None

    def pending(self) -> dict[str, list] | None:
        """Priorities loaded but not yet applied, for a checkpoint."""
        if self.priorities is None:
            return None
        ids, priorities = self.priorities
        return {"ids": ids.tolist(), "priorities": priorities.tolist()}
