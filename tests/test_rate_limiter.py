"""The Ape-X rate limiter (atari_dqn/modes/rate_limiter.py): hand-checkable sequences, its bounds,
who waits for whom, and a randomized run of actors and a learner against the stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from atari_dqn.learn.schedule import update_step, updates_made
from atari_dqn.modes.rate_limiter import ACTORS, LEARNER, RateLimiter

# --train-every 4, --learning-starts 10: updates at agent steps b_1 = 12, b_2 = 16, b_3 = 20, ...
EVERY, STARTS, TOLERANCE, BATCH = 4, 10, 6, 32


def limiter(stored: int = 0) -> RateLimiter:
    return RateLimiter(train_every_steps=EVERY, learning_starts_steps=STARTS,
                       tolerance_steps=TOLERANCE, batch_size=BATCH, stored=stored)


def test_updates_stand_for_the_steps_the_one_process_loop_learns_at():
    kw = dict(train_every_steps=4, learning_starts_steps=62)
    assert [updates_made(step, **kw) for step in (0, 62, 63, 64, 67, 68)] == [0, 0, 0, 1, 1, 2]
    assert [update_step(u, **kw) for u in (1, 2, 3)] == [64, 68, 72]
    assert all(updates_made(update_step(u, **kw), **kw) == u for u in range(1, 50))


def test_a_hand_checked_sequence():
    rl = limiter()
    assert rl.samples_per_insert == 8.0 and rl.request_limit == 12 + 6
    # before learning starts: the actors may run to b_1 + tolerance = 18, the learner waits
    rl.request(10)
    assert rl.may_request() and not rl.may_update() and rl.waiting() == (LEARNER,)
    rl.request(10)  # 10 < 18 was allowed; now 20 asked for
    assert not rl.may_request() and rl.waiting() == (LEARNER, ACTORS)  # both: 20 in flight
    rl.store(10)
    assert not rl.may_update()  # 10 stored < b_1 = 12
    rl.store(10)  # 20 stored: updates 1 and 2 (b = 12, 16) and b_3 = 20 are due
    assert rl.may_update() and rl.waiting() == (ACTORS,)
    assert [rl.update(), rl.update(), rl.update()] == [12, 16, 20]
    assert not rl.may_update()
    # the limit moved with the learner: b_4 + 6 = 30 > 20 asked for
    assert rl.request_limit == 30 and rl.may_request() and rl.waiting() == (LEARNER,)
    rl.request(8)
    rl.lost(8)  # an actor died: its steps are asked again
    assert (rl.requested, rl.stored, rl.updates) == (20, 20, 3)


def test_a_resumed_limiter_counts_the_updates_its_stored_steps_allowed_as_made():
    rl = limiter(stored=21)
    assert (rl.requested, rl.stored, rl.updates) == (21, 21, 3)  # b_3 = 20 <= 21 < b_4 = 24
    assert not rl.may_update() and rl.request_limit == 24 + TOLERANCE


def test_forbidden_calls_are_value_errors_that_change_nothing():
    rl = limiter()
    with pytest.raises(ValueError, match="update 1 stands for agent step 12"):
        rl.update()
    rl.request(18)
    with pytest.raises(ValueError, match="limit is 18"):
        rl.request(1)
    with pytest.raises(ValueError, match="18 are in flight"):
        rl.store(19)
    with pytest.raises(ValueError, match="18 are in flight"):
        rl.lost(19)
    with pytest.raises(ValueError, match=">= 1"):
        limiter().request(0)
    assert (rl.requested, rl.stored, rl.updates) == (18, 0, 0)
    with pytest.raises(ValueError):
        RateLimiter(train_every_steps=0, learning_starts_steps=0, tolerance_steps=0, batch_size=1)


def test_with_nothing_in_flight_someone_may_always_go_on():
    """No deadlock: with requested == stored, a refused request means an update is due."""
    for tolerance in (0, 3, 50):
        for stored in range(0, 60):
            rl = RateLimiter(train_every_steps=EVERY, learning_starts_steps=STARTS,
                             tolerance_steps=tolerance, batch_size=BATCH, stored=stored)
            for _ in range(20):
                assert rl.may_request() or rl.may_update()
                if rl.may_update():
                    rl.update()
                else:
                    rl.request(1)
                    rl.store(1)


@pytest.mark.parametrize("seed", range(5))
def test_random_actors_and_learner_stay_within_the_tolerance(seed):
    rng = np.random.default_rng(seed)
    every, starts = int(rng.integers(1, 9)), int(rng.integers(0, 100))
    chunk_max, actors = int(rng.integers(1, 60)), int(rng.integers(1, 5))
    tolerance = actors * chunk_max
    rl = RateLimiter(train_every_steps=every, learning_starts_steps=starts,
                     tolerance_steps=tolerance, batch_size=BATCH)
    in_flight: list[int] = []  # chunk sizes, stored in the order asked
    b0 = update_step(0, train_every_steps=every, learning_starts_steps=starts)
    for _ in range(3_000):
        move = rng.integers(4)
        if move == 0 and rl.may_request():
            steps = int(rng.integers(1, chunk_max + 1))
            rl.request(steps)
            in_flight.append(steps)
        elif move == 1 and in_flight:
            rl.store(in_flight.pop(0))
        elif move == 2 and in_flight and rng.random() < 0.05:
            rl.lost(in_flight.pop())
        elif move == 3 and rl.may_update():
            assert rl.update() <= rl.stored
        # the bounds of the module's doc
        assert rl.stored + sum(in_flight) == rl.requested
        assert rl.updates <= updates_made(rl.stored, train_every_steps=every,
                                          learning_starts_steps=starts)
        lag = rl.stored - rl.step_of(rl.updates)
        assert lag < every + tolerance + chunk_max
        if not rl.may_update() and rl.stored >= b0:
            assert 0 <= lag < every
        # in samples per insert, past b_0
        samples, inserted = BATCH * rl.updates, max(0, rl.stored - b0)
        assert abs(samples - rl.samples_per_insert * inserted) \
            <= rl.samples_per_insert * (every + tolerance + chunk_max)
        assert rl.may_request() or rl.may_update() or in_flight  # someone can go on
    assert rl.updates > 0
