"""The Ape-X rate limiter: holds the learner's samples per inserted agent step at the one-process
loop's ratio while actors (producers) and the learner (consumer) run apart (as Reverb's
SampleToInsertRatio, in agent steps and updates instead of items and samples).

The one-process loop (one_process.py) makes update u at agent step b_u, the u-th multiple of
--train-every above --learning-starts (schedule.update_step): --batch-size samples per
--train-every agent steps inserted. The limiter keeps three counts, all since the run began:

    stored     agent steps inserted into the memory (over all games)
    requested  agent steps asked of the actors: stored, or in flight (stored <= requested)
    updates    updates made (each one batch of --batch-size samples)

and answers two questions:

    may_update():  updates < updates_made(stored), i.e. b_(updates+1) <= stored.
                   No: the LEARNER waits for the actors (their chunks in flight).
    may_request(): requested < b_(updates+1) + tolerance_steps.
                   No: the ACTORS wait for the learner (no new chunk is asked for).

Bounds (tolerance_steps: K * --envs * CHUNK_STEPS in apex.py, one chunk per actor; c: the
largest request, one chunk). The learner never runs ahead, and a request is only made while
may_request() says yes and updates never decrease, so at any time
    updates <= updates_made(stored)                                    (never ahead)
    stored - b_updates <= requested - b_updates < train_every + tolerance_steps + c
and once the learner has caught up (may_update() says no) also stored - b_updates < train_every.
In samples per insert: over the agent steps past b_0 the learner has drawn batch_size * updates
samples, within batch_size / train_every * (train_every + tolerance_steps + c) of the
one-process ratio's batch_size / train_every per step. When nothing is in flight and the
learner has caught up the ratio is exact (evaluations and checkpoints see it).

Before learning starts (stored <= --learning-starts) may_update() says no, and the actors may run
up to b_1 + tolerance_steps (b_1 > --learning-starts). Neither side can block for good: when
both say no, chunks are in flight (requested > stored) and storing them lets the learner on;
when nothing is in flight, requested = stored and may_request() says no only if
stored >= b_(updates+1), when may_update() says yes.

Every method checks its argument and the rule it serves before it changes a count (a call the
limiter forbids is a ValueError and leaves it as it was). Imports no Ray or torch.
"""

from __future__ import annotations

from atari_dqn.learn.schedule import update_step, updates_made

LEARNER = "learner"  # the learner waits for inserts (progress line: waits learner)
ACTORS = "actors (rate limiter)"  # the actors wait for the learner's updates
NOBODY = "-"


class RateLimiter:
    def __init__(self, *, train_every_steps: int, learning_starts_steps: int,
                 tolerance_steps: int, batch_size: int, stored: int = 0) -> None:
        """stored: agent steps already in the memory (a resumed run); the updates they allowed
        are counted as made (a checkpoint is taken with every update made)."""
        if train_every_steps < 1 or learning_starts_steps < 0 or tolerance_steps < 0 \
                or batch_size < 1 or stored < 0:
            raise ValueError(f"RateLimiter: train_every_steps {train_every_steps} >= 1, "
                             f"learning_starts_steps {learning_starts_steps} >= 0, "
                             f"tolerance_steps {tolerance_steps} >= 0, batch_size {batch_size}"
                             f" >= 1 and stored {stored} >= 0 needed")
        self.train_every_steps = train_every_steps
        self.learning_starts_steps = learning_starts_steps
        self.tolerance_steps, self.batch_size = tolerance_steps, batch_size
        self.stored = self.requested = stored
        self.updates = self._due(stored)

    @property
    def samples_per_insert(self) -> float:
        """The ratio held: samples drawn per agent step inserted (past --learning-starts)."""
        return self.batch_size / self.train_every_steps

    def _due(self, stored: int) -> int:
        return updates_made(stored, train_every_steps=self.train_every_steps,
                            learning_starts_steps=self.learning_starts_steps)

    def step_of(self, update: int) -> int:
        """b_update: the agent step update number `update` stands for."""
        return update_step(update, train_every_steps=self.train_every_steps,
                           learning_starts_steps=self.learning_starts_steps)

    @property
    def request_limit(self) -> int:
        """Requests may be made while requested is below this: b_(updates+1) + tolerance."""
        return self.step_of(self.updates + 1) + self.tolerance_steps

    # The two questions, and who waits.
    def may_request(self) -> bool:
        """May the actors be asked for more agent steps? No: they wait for the learner."""
        return self.requested < self.request_limit

    def may_update(self) -> bool:
        """May the learner make (sample for) its next update? No: it waits for the actors."""
        return self.updates < self._due(self.stored)

    def waiting(self) -> tuple[str, ...]:
        """Who waits now for whom: LEARNER (for inserts), ACTORS (for updates), both (chunks in
        flight will free the learner), or neither."""
        return ((LEARNER,) if not self.may_update() else ()) + \
            ((ACTORS,) if not self.may_request() else ())

    # The events.
    def request(self, steps: int) -> None:
        """`steps` agent steps were asked of an actor (in flight until stored or lost)."""
        if steps < 1:
            raise ValueError(f"RateLimiter.request: {steps} steps, need >= 1")
        if not self.may_request():
            raise ValueError(f"RateLimiter.request: {self.requested} agent steps asked, the "
                             f"limit is {self.request_limit} until the learner's next update")
        self.requested += steps

    def lost(self, steps: int) -> None:
        """`steps` agent steps in flight will never come (their actor died): ask again."""
        if not 0 < steps <= self.requested - self.stored:
            raise ValueError(f"RateLimiter.lost: {steps} steps, but "
                             f"{self.requested - self.stored} are in flight")
        self.requested -= steps

    def store(self, steps: int) -> None:
        """`steps` agent steps in flight were stored in the memory."""
        if not 0 < steps <= self.requested - self.stored:
            raise ValueError(f"RateLimiter.store: {steps} steps, but "
                             f"{self.requested - self.stored} are in flight")
        self.stored += steps

    def update(self) -> int:
        """The learner makes its next update; returns the agent step it stands for, b_u."""
        if not self.may_update():
            raise ValueError(f"RateLimiter.update: update {self.updates + 1} stands for agent "
                             f"step {self.step_of(self.updates + 1)}, {self.stored} are stored")
        self.updates += 1
        return self.step_of(self.updates)
