import pytest

from atari_dqn.learn.schedule import apex_epsilons, beta, epsilon

EPS = dict(start=1.0, end=0.1, decay_steps=100, warmup_steps=50)


def test_epsilon_is_one_during_warmup_whatever_the_start():
    assert [epsilon(s, **{**EPS, "start": 0.5}) for s in (0, 10, 49)] == [1.0, 1.0, 1.0]


def test_epsilon_endpoints_and_midpoint():
    assert epsilon(50, **EPS) == 1.0
    assert epsilon(100, **EPS) == pytest.approx(0.55)
    assert epsilon(150, **EPS) == pytest.approx(0.1)
    assert epsilon(10_000, **EPS) == pytest.approx(0.1)


def test_epsilon_decreases_monotonically():
    values = [epsilon(s, **EPS) for s in range(0, 200)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_epsilon_without_decay_jumps_to_end_after_warmup():
    assert epsilon(49, **{**EPS, "decay_steps": 0}) == 1.0
    assert epsilon(50, **{**EPS, "decay_steps": 0}) == 0.1


def test_beta_rises_linearly_to_one_at_the_last_step():
    assert beta(0, start=0.4, total_steps=1000) == pytest.approx(0.4)
    assert beta(500, start=0.4, total_steps=1000) == pytest.approx(0.7)
    assert beta(1000, start=0.4, total_steps=1000) == 1.0
    assert beta(5000, start=0.4, total_steps=1000) == 1.0


def test_ape_x_epsilons_run_from_0_4_to_0_4_to_the_8th():
    assert apex_epsilons(1) == [0.4]
    assert apex_epsilons(3) == pytest.approx([0.4, 0.4 ** 4.5, 0.4 ** 8])
    eps = apex_epsilons(14)
    assert eps[0] == 0.4 and eps[-1] == pytest.approx(0.4 ** 8)
    assert all(a > b for a, b in zip(eps, eps[1:]))
    with pytest.raises(ValueError):
        apex_epsilons(0)
