from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atari_dqn.agent import Agent
from atari_dqn.config import Config

N_ACTIONS = 4


def make_agent(**overrides) -> Agent:
    torch.manual_seed(0)
    config = Config(out_dir="x", **{"compile": False, **overrides})
    return Agent(N_ACTIONS, config, torch.device("cpu"))


def fixed_batch(size=16, seed=0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    frames = lambda: rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8)  # noqa: E731
    return SimpleNamespace(
        states=frames(), next_states=frames(),
        actions=rng.integers(N_ACTIONS, size=size).astype(np.int64),
        rewards=rng.choice([-1.0, 0.0, 1.0], size=size).astype(np.float32),
        discounts=np.where(rng.random(size) < 0.2, 0.0, 0.99).astype(np.float32))


def td_loss(agent: Agent, batch) -> float:
    with torch.no_grad():
        q = agent.online(torch.from_numpy(batch.states))
        q = q.gather(1, torch.from_numpy(batch.actions)[:, None]).squeeze(1)
        next_q = agent.target(torch.from_numpy(batch.next_states)).max(1).values
        target = torch.from_numpy(batch.rewards) + torch.from_numpy(batch.discounts) * next_q
        return float(torch.nn.functional.smooth_l1_loss(q, target))


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def test_target_starts_equal_and_sync_copies_the_weights_exactly():
    agent = make_agent()
    for a, b in zip(params(agent.online), params(agent.target)):
        assert torch.equal(a, b)
    agent.learn(fixed_batch())
    assert any(not torch.equal(a, b) for a, b in zip(params(agent.online), params(agent.target)))
    agent.sync_target()
    for a, b in zip(params(agent.online), params(agent.target)):
        assert torch.equal(a, b)


def test_learn_changes_only_the_online_network():
    agent = make_agent()
    target_before = params(agent.target)
    agent.learn(fixed_batch())
    assert all(torch.equal(a, b) for a, b in zip(target_before, params(agent.target)))


@pytest.mark.parametrize("double", [False, True])
def test_learning_steps_on_a_fixed_batch_lower_the_td_loss(double):
    agent = make_agent(lr=1e-4, double=double)
    batch = fixed_batch()
    before = td_loss(agent, batch)
    first = agent.learn(batch)
    assert first.loss == pytest.approx(before, rel=1e-5)
    for _ in range(5):
        agent.learn(batch)
    assert td_loss(agent, batch) < before


def test_learn_reports_td_errors_for_priorities():
    agent = make_agent()
    batch = fixed_batch(size=8)
    stats = agent.learn(batch)
    assert stats.td_errors.shape == (8,) and stats.td_errors.dtype == np.float32
    assert (stats.td_errors >= 0).all()


def huber(td_errors):
    return np.where(td_errors < 1.0, 0.5 * td_errors ** 2, td_errors - 0.5)


def test_importance_weights_count_relative_to_the_batch_largest():
    batch = fixed_batch(size=8)
    plain = make_agent().learn(batch)
    assert plain.loss == pytest.approx(huber(plain.td_errors).mean(), rel=1e-5)
    # equal weights, however small, are uniform replay: the step size does not shrink
    tiny = make_agent().learn(batch, np.full(8, 0.004, np.float32))
    assert tiny.loss == pytest.approx(plain.loss, rel=1e-5)
    weights = np.array([0.02, 0.01, 0.005, 0.0, 0.02, 0.01, 0.015, 0.02], np.float32)
    weighted = make_agent().learn(batch, weights)
    expected = (weights / weights.max() * huber(weighted.td_errors)).mean()
    assert weighted.loss == pytest.approx(expected, rel=1e-5)


def test_terminal_transitions_bootstrap_nothing():
    agent = make_agent()
    batch = fixed_batch(size=4)
    batch.discounts[:] = 0.0
    stats = agent.learn(batch)
    # with discount 0 the target is the reward, whatever the next state holds
    batch2 = fixed_batch(size=4)
    batch2.discounts[:] = 0.0
    batch2.states, batch2.actions, batch2.rewards = batch.states, batch.actions, batch.rewards
    again = make_agent().learn(batch2)
    assert again.loss == pytest.approx(stats.loss, rel=1e-6)


def test_act_is_greedy_at_epsilon_zero_and_uniform_at_one():
    agent = make_agent()
    state = fixed_batch(size=1).states[0]
    greedy = int(agent.greedy_actions(state[None])[0])
    rng = np.random.default_rng(0)
    assert {agent.act(state, 0.0, rng) for _ in range(20)} == {greedy}
    counts = np.bincount([agent.act(state, 1.0, rng) for _ in range(2_000)], minlength=N_ACTIONS)
    assert counts.min() > 400  # each of 4 actions about 500 times


def test_act_batch_draws_from_the_rng_row_by_row_as_act_does():
    """A batch of N states uses the rng as N calls of act() would, and its greedy rows are the
    greedy actions of their states (one forward over the whole batch)."""
    agent = make_agent()
    states = fixed_batch(size=6).states
    greedy = agent.greedy_actions(states)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for epsilon in (0.0, 0.5, 1.0):
        batched = agent.act_batch(states, epsilon, a)
        assert batched.dtype == np.int64 and batched.shape == (6,)
        assert batched.tolist() == [agent.act(state, epsilon, b) for state in states]
    assert agent.act_batch(states, 0.0, a).tolist() == greedy.tolist()


def test_act_uses_the_rng_the_same_way_for_the_same_epsilon():
    agent = make_agent()
    state = fixed_batch(size=1).states[0]
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    assert [agent.act(state, 0.3, a) for _ in range(50)] == [agent.act(state, 0.3, b)
                                                            for _ in range(50)]


def test_state_dict_round_trip_restores_networks_and_optimizer():
    agent = make_agent()
    agent.learn(fixed_batch())
    copy = make_agent(seed=1)
    copy.load_state_dict(agent.state_dict())
    batch = fixed_batch(seed=3)
    assert copy.learn(batch).loss == agent.learn(batch).loss
    for a, b in zip(params(agent.online), params(copy.online)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("double", [False, True])
def test_compiled_agent_learns_what_the_eager_one_learns(double):
    """torch.compile changes float rounding only: same Q-values, TD errors and weights after
    updates (to float32 tolerance), and the same checkpoint layout, loadable either way."""
    eager, compiled = make_agent(compile=False, double=double), make_agent(compile=True,
                                                                             double=double)
    assert eager.state_dict()["online"].keys() == compiled.state_dict()["online"].keys()
    compiled.load_state_dict(eager.state_dict())
    for seed in range(3):
        batch = fixed_batch(seed=seed)
        a, b = eager.learn(batch), compiled.learn(batch)
        np.testing.assert_allclose(a.td_errors, b.td_errors, rtol=1e-4, atol=1e-4)
    for p, q in zip(params(eager.online), params(compiled.online)):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():  # batch 1 under inference_mode: the acting graph
        state = torch.from_numpy(fixed_batch().states[:1])
        torch.testing.assert_close(eager.online(state), compiled.online(state),
                                   rtol=1e-4, atol=1e-5)
    eager.load_state_dict(compiled.state_dict())  # a compiled run's checkpoint loads eagerly


def test_a_non_finite_loss_raises_before_the_step_and_changes_nothing():
    """Issue 12, defect 6: NaN TD errors used to be trained on (or crash in the memory)."""
    from atari_dqn.agent import NonFiniteLoss

    agent = make_agent()
    agent.learn(fixed_batch())  # the optimizer has state to keep
    before = make_agent()
    before.load_state_dict(agent.state_dict())
    batch = fixed_batch(seed=1)
    batch.rewards[3] = np.nan
    with pytest.raises(NonFiniteLoss, match="loss nan"):
        agent.learn(batch)
    for a, b in zip(params(agent.online), params(before.online)):
        assert torch.equal(a, b)
    clean = fixed_batch(seed=2)  # the optimizer's moments and step count are untouched too
    assert agent.learn(clean).loss == before.learn(clean).loss
