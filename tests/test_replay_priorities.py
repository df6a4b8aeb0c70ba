"""Fenwick tree, min tree and proportional prioritized sampling."""
import math

import numpy as np
import pytest

from atari_dqn import _replay
from atari_dqn.replay import PrioritizedReplayMemory


def test_fenwick_four_leaves_by_hand():
    tree = _replay.FenwickTree(4)
    for i, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        tree.set(i, value)
    assert [tree.prefix(i) for i in range(5)] == [0.0, 1.0, 3.0, 6.0, 10.0]
    assert tree.total() == 10.0
    # leaf i owns the masses [prefix(i), prefix(i + 1))
    cases = {0.0: 0, 0.99: 0, 1.0: 1, 2.5: 1, 3.0: 2, 5.99: 2, 6.0: 3, 9.99: 3, 10.0: 4}
    assert {mass: tree.find(mass) for mass in cases} == cases
    tree.set(1, 0.0)  # a zero leaf owns no mass: descent skips it
    assert tree.find(1.0) == 2 and tree.find(0.5) == 0
    tree.check_invariants()


def test_fenwick_against_brute_force():
    rng = np.random.default_rng(0)
    for size in [1, 2, 3, 5, 8, 13, 64, 100]:
        tree, leaves = _replay.FenwickTree(size), np.zeros(size)
        for _ in range(300):
            i = int(rng.integers(size))
            leaves[i] = 0.0 if rng.random() < 0.2 else rng.random() * 10
            tree.set(i, float(leaves[i]))
            k = int(rng.integers(size + 1))
            assert tree.prefix(k) == pytest.approx(leaves[:k].sum(), rel=1e-12, abs=1e-12)
            total = leaves.sum()
            if total > 0:
                mass = rng.random() * total
                expected = int(np.searchsorted(np.cumsum(leaves), mass, side="right"))
                found = tree.find(mass)
                # equal unless the mass sits within rounding of a boundary
                if found != expected:
                    boundary = np.cumsum(leaves)[min(found, expected)]
                    assert abs(boundary - mass) < 1e-9
                else:
                    assert leaves[found] > 0
        tree.check_invariants()


def test_fenwick_drift_stays_bounded_after_millions_of_updates():
    rng = np.random.default_rng(7)
    size, updates = 1000, 3_000_000
    tree = _replay.FenwickTree(size)
    indices = rng.integers(0, size, updates).astype(np.int64)
    values = rng.random(updates) * 10.0 ** rng.integers(-3, 4, updates)  # six orders of magnitude
    tree.set_many(indices, values)
    tree.check_invariants()  # the bound stated in sum_tree.h
    leaves = np.array([tree.get(i) for i in range(size)])
    exact = math.fsum(leaves)
    assert abs(tree.total() - exact) <= 1e-12 * exact


def test_fenwick_rebuild_removes_drift_left_by_huge_values():
    # Leaves swing between 1e12 and 1e-3: each delta update leaves rounding error of
    # order eps * 1e12 in the internal nodes. The drift bound scales with the peak
    # total since the last rebuild. Once the total falls below 2^-16 of that peak the
    # tree rebuilds at once (issue 12: otherwise the small leaves' mass can cancel to 0),
    # so even a tree whose periodic rebuild never comes ends exact.
    rebuilt, never = _replay.FenwickTree(64), _replay.FenwickTree(64, rebuild_every=10**12)
    for tree in (rebuilt, never):
        for round_ in range(200):
            for i in range(64):
                tree.set(i, 1e12 if round_ % 2 == 0 else 1e-3 * (i + 1))
        tree.check_invariants()  # within the stated bound even at the worst point
        for _ in range(20):
            for i in range(64):
                tree.set(i, 1e-3 * (i + 1))
    exact = math.fsum(1e-3 * (i + 1) for i in range(64))
    assert abs(rebuilt.total() - exact) <= 1e-12 * exact
    assert abs(never.total() - exact) <= 1e-12 * exact


def test_fenwick_total_survives_cancellation():
    """One huge leaf set back to a small value: the deltas alone would leave a total of 0."""
    tree = _replay.FenwickTree(64, rebuild_every=10**12)
    for i in range(64):
        tree.set(i, 1.0)
    tree.set(7, 1e300)
    tree.set(7, 1.0)
    assert tree.total() == 64.0
    assert tree.find(63.5) == 63
    tree.check_invariants()


def test_fenwick_sums_stay_finite():
    tree = _replay.FenwickTree(4)
    assert tree.max_leaf == np.finfo(np.float64).max / 8
    for i in range(4):
        tree.set(i, tree.max_leaf)
    assert math.isfinite(tree.total())
    with pytest.raises(ValueError):
        tree.set(0, np.nextafter(tree.max_leaf, np.inf))
    assert tree.get(0) == tree.max_leaf


def test_fenwick_rejects_bad_values():
    tree = _replay.FenwickTree(4)
    for bad in [float("nan"), float("inf"), -1.0]:
        with pytest.raises(ValueError):
            tree.set(0, bad)
    with pytest.raises(IndexError):
        tree.set(4, 1.0)


def test_min_tree_against_brute_force():
    rng = np.random.default_rng(1)
    for size in [1, 2, 3, 7, 16, 33]:
        tree, leaves = _replay.MinTree(size), np.full(size, np.inf)
        for _ in range(200):
            i = int(rng.integers(size))
            leaves[i] = np.inf if rng.random() < 0.3 else rng.random()
            tree.set(i, float(leaves[i]))
            assert tree.min() == leaves.min()
        tree.check_invariants()


def filled_memory(capacity, priorities, alpha=0.6, seed=0):
    memory = PrioritizedReplayMemory(capacity, frame_shape=(1, 1), stack=1, alpha=alpha, seed=seed)
    memory.start_episode(np.zeros((1, 1), np.uint8))
    for i in range(len(priorities)):
        memory.append(0, 0.0, np.full((1, 1), i % 256, np.uint8), False)
    memory.update_priorities(np.arange(len(priorities)), np.asarray(priorities))
    return memory


def chi_square_critical(df, z=3.09):
    """Wilson-Hilferty upper quantile of chi-square(df); z=3.09 is the 0.001 tail."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_sampling_frequencies_follow_priority_to_the_alpha():
    rng = np.random.default_rng(5)
    priorities = rng.random(20) * 5
    alpha, eps = 0.6, 1e-6
    memory = filled_memory(32, priorities, alpha=alpha)
    draws, batch = 4000, 32
    counts = np.zeros(20)
    for _ in range(draws):
        counts += np.bincount(memory.sample(batch, 0.4).ids, minlength=20)
    expected_p = (priorities + eps) ** alpha
    expected = expected_p / expected_p.sum() * draws * batch
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < chi_square_critical(19), (chi2, counts, expected)
    # and it is not uniform: the most likely item is drawn far more than the least
    assert counts[np.argmax(priorities)] > 2 * counts[np.argmin(priorities)]


def test_stratified_batch_takes_one_draw_per_segment():
    # Equal priorities: segment b of the total holds exactly item b.
    memory = filled_memory(8, np.ones(8))
    for _ in range(20):
        assert sorted(memory.sample(8, 0.5).ids.tolist()) == list(range(8))


def test_weights_match_the_formula():
    priorities = np.array([0.1, 1.0, 2.0, 5.0, 0.5])
    alpha, eps, beta = 0.7, 1e-6, 0.4
    memory = filled_memory(8, priorities, alpha=alpha)
    p = (priorities + eps) ** alpha
    probabilities = p / p.sum()
    n = len(priorities)
    max_weight = (n * probabilities.min()) ** -beta
    batch = memory.sample(64, beta)
    expected = (n * probabilities[batch.ids]) ** -beta / max_weight
    np.testing.assert_allclose(batch.weights, expected, rtol=1e-6)
    assert batch.weights.max() <= 1.0
    assert memory.sample(16, 0.0).weights.tolist() == [1.0] * 16  # beta = 0: no correction


def test_new_transitions_get_the_largest_priority_seen():
    memory = PrioritizedReplayMemory(16, frame_shape=(1, 1), stack=1, alpha=0.5)
    memory.start_episode(np.zeros((1, 1), np.uint8))
    memory.append(0, 0.0, np.zeros((1, 1), np.uint8), False)
    assert memory.priority(0) == 1.0 and memory.max_priority == 1.0  # 1.0 at first
    memory.update_priorities([0], [8.0])
    memory.append(0, 0.0, np.zeros((1, 1), np.uint8), False)
    assert memory.max_priority == pytest.approx(8.0 + 1e-6)
    assert memory.priority(1) == pytest.approx((8.0 + 1e-6) ** 0.5)
    memory.update_priorities([0], [0.0])  # lowering one leaves the maximum alone
    memory.append(0, 0.0, np.zeros((1, 1), np.uint8), False)
    assert memory.priority(2) == pytest.approx((8.0 + 1e-6) ** 0.5)
    assert memory.priority(0) == pytest.approx(1e-6**0.5)


def test_stale_ids_are_ignored():
    capacity = 6
    memory = filled_memory(capacity, np.ones(capacity))
    old = memory.sample(4, 0.5).ids
    frame = np.zeros((1, 1), np.uint8)
    for _ in range(capacity):  # overwrite every slot
        memory.append(1, 0.0, frame, False)
    before = [memory.priority(i) for i in range(capacity, 2 * capacity)]
    max_before = memory.max_priority
    memory.update_priorities(old, np.full(len(old), 100.0))
    assert [memory.priority(i) for i in range(capacity, 2 * capacity)] == before
    assert memory.max_priority == max_before  # ignored ids do not raise the maximum either
    memory.check_invariants()


def test_priority_updates_change_what_is_sampled():
    memory = filled_memory(10, np.full(10, 1e-3))
    memory.update_priorities([7], [1000.0])
    counts = np.bincount(memory.sample(64, 1.0).ids, minlength=10)
    assert counts[7] >= 60
