from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent
from learning_batches import random_batch

N_ACTIONS = 4


def make_agent(**overrides) -> Agent:
    torch.manual_seed(0)
    # the scalar head unless a test names one: the hand-worked checks below are the scalar's
    config = Config(out_dir="x", **{"compile": False, "head": "scalar", **overrides})
    return Agent(N_ACTIONS, config, torch.device("cpu"))


def fixed_batch(size=16, seed=0) -> SimpleNamespace:
    return random_batch(N_ACTIONS, size, seed, terminal_rate=0.2, discount=0.99)


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


def test_act_batch_takes_one_epsilon_per_row_as_ape_x_actors_do():
    """Row i with epsilons[i] acts as act() with that epsilon would, drawing on the rng in the
    same order; a row at 0 is always greedy, a row at 1 never consults the network."""
    agent = make_agent()
    states = fixed_batch(size=4).states
    greedy = agent.greedy_actions(states)
    epsilons = np.array([0.0, 1.0, 0.5, 0.0])
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(20):
        batched = agent.act_batch(states, epsilons, a)
        assert batched.tolist() == [agent.act(state, float(eps), b)
                                    for state, eps in zip(states, epsilons)]
        assert batched[0] == greedy[0] and batched[3] == greedy[3]


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
    from atari_dqn.learn.agent import NonFiniteLoss

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


# --- QR-DQN (--head quantile) and --augment ---------------------------------------------------


def reference_quantile_learn(agent: Agent, batch, weights=None) -> tuple[float, np.ndarray]:
    """The loss and priorities of agent.learn(batch, weights) before its update, with loops."""
    with torch.no_grad():
        z = agent.online.quantiles(torch.from_numpy(batch.states)).numpy()
        z_next = agent.target.quantiles(torch.from_numpy(batch.next_states)).numpy()
        q_next_online = agent.online(torch.from_numpy(batch.next_states)).numpy()
    taus = agent.online.quantile_fractions.numpy()
    n = len(taus)
    losses, td_errors = [], []
    for b in range(len(batch.actions)):
        chooser = q_next_online[b] if agent.config.double else z_next[b].mean(axis=1)
        target = batch.rewards[b] + batch.discounts[b] * z_next[b, int(np.argmax(chooser))]
        total, abs_sum = 0.0, 0.0
        for i in range(n):
            for j in range(n):
                u = float(target[j]) - float(z[b, batch.actions[b], i])
                h = 0.5 * u * u if abs(u) <= 1 else abs(u) - 0.5
                total += abs(taus[i] - (u < 0)) * h / n
                abs_sum += abs(u)
        losses.append(total)
        td_errors.append(abs_sum / (n * n))
    losses = np.array(losses)
    if weights is not None:
        losses = losses * weights / weights.max()
    return float(losses.mean()), np.array(td_errors, np.float32)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("prioritized", [False, True])
def test_quantile_learn_matches_the_written_out_loss(double, dueling, prioritized):
    agent = make_agent(head="quantile", n_quantiles=5, double=double, dueling=dueling,
                       compile=False)
    batch = fixed_batch(size=6)
    batch.discounts[:] = np.where(batch.discounts > 0, 0.99 ** 3, 0.0)  # 3-step returns
    weights = (np.array([0.5, 1.0, 0.25, 0.0, 0.75, 0.1], np.float32) if prioritized
               else None)
    expected_loss, expected_td = reference_quantile_learn(agent, batch, weights)
    stats = agent.learn(batch, weights)
    assert stats.loss == pytest.approx(expected_loss, rel=1e-4)
    np.testing.assert_allclose(stats.td_errors, expected_td, rtol=1e-4)
    assert stats.td_errors.dtype == np.float32 and stats.td_errors.shape == (6,)


@pytest.mark.parametrize("augment", [False, True])
def test_quantile_learning_steps_on_a_fixed_batch_lower_the_loss(augment):
    agent = make_agent(head="quantile", compile=False, augment=augment)
    batch = fixed_batch()
    before, _ = reference_quantile_learn(agent, batch)
    first = agent.learn(batch).loss
    if not augment:  # augmented, the first step learns on shifted stacks
        assert first == pytest.approx(before, rel=1e-4)
    for _ in range(5):
        agent.learn(batch)
    after, _ = reference_quantile_learn(agent, batch)
    assert after < before


def test_the_default_quantile_count_is_200():
    agent = make_agent(head="quantile", compile=False)
    assert agent.online.n_quantiles == 200
    assert agent.online(torch.from_numpy(fixed_batch(size=2).states)).shape == (2, N_ACTIONS)


def test_augmented_learning_is_reproducible_and_resumes_exactly():
    batches = [fixed_batch(seed=s) for s in range(4)]
    a, b = make_agent(augment=True, compile=False), make_agent(augment=True, compile=False)
    assert [a.learn(x).loss for x in batches[:2]] == [b.learn(x).loss for x in batches[:2]]
    resumed = make_agent(augment=True, compile=False, seed=9)
    resumed.load_state_dict(a.state_dict())
    assert [a.learn(x).loss for x in batches[2:]] == [resumed.learn(x).loss for x in batches[2:]]


def test_augmentation_changes_what_is_learned_and_depends_on_the_seed():
    batch = fixed_batch()
    plain = make_agent(compile=False).learn(batch).loss
    shifted = make_agent(augment=True, compile=False).learn(batch).loss
    other_seed = make_agent(augment=True, compile=False, seed=1).learn(batch).loss
    assert len({plain, shifted, other_seed}) == 3


def test_a_checkpoint_from_before_augment_loads_into_an_augmenting_agent():
    old = make_agent(compile=False).state_dict()
    assert "augment_rng" not in old
    agent = make_agent(augment=True, compile=False)
    agent.load_state_dict(old)
    fresh = make_agent(augment=True, compile=False)
    batch = fixed_batch()
    assert agent.learn(batch).loss == fresh.learn(batch).loss  # the seeded generator is kept


def test_compiled_quantile_agent_learns_what_the_eager_one_learns():
    eager = make_agent(head="quantile", n_quantiles=8, compile=False)
    compiled = make_agent(head="quantile", n_quantiles=8, compile=True)
    compiled.load_state_dict(eager.state_dict())
    for seed in range(2):
        batch = fixed_batch(seed=seed)
        a, b = eager.learn(batch), compiled.learn(batch)
        np.testing.assert_allclose(a.td_errors, b.td_errors, rtol=1e-4, atol=1e-4)
    for p, q in zip(params(eager.online), params(compiled.online)):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


# --- --precision bf16 --------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["scalar", "quantile"])
def test_bf16_updates_round_like_bfloat16_and_keep_the_state_float32(head):
    """bf16 is on (its loss is not fp32's bit for bit) yet only rounds: the same loss and TD
    errors within bfloat16's ~3 significant digits, weights, gradients and Adam in float32,
    and repeated updates on a fixed batch still lower the loss."""
    fp32 = make_agent(head=head, n_quantiles=8)
    bf16 = make_agent(head=head, n_quantiles=8, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    batch = fixed_batch()
    a, b = fp32.learn(batch), bf16.learn(batch)
    assert a.loss != b.loss
    assert b.loss == pytest.approx(a.loss, rel=0.05)
    np.testing.assert_allclose(b.td_errors, a.td_errors, rtol=0.05, atol=0.01)
    assert b.td_errors.dtype == np.float32
    for p in bf16.online.parameters():
        assert p.dtype == p.grad.dtype == torch.float32
    assert all(v.dtype == torch.float32 for state in bf16.optimizer.state.values()
               for k, v in state.items() if k != "step")
    losses = [bf16.learn(batch).loss for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]


def test_bf16_acts_in_float32():
    fp32, bf16 = make_agent(), make_agent(precision="bf16")
    states = fixed_batch().states
    with torch.inference_mode():
        assert torch.equal(fp32.online(torch.from_numpy(states)),
                           bf16.online(torch.from_numpy(states)))
    np.testing.assert_array_equal(fp32.greedy_actions(states), bf16.greedy_actions(states))


# --- --reset-every: shrink and perturb ---------------------------------------------------------

def named(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


@pytest.mark.parametrize("network", ["nature", "impala"])
def test_reset_shrinks_the_encoder_and_reinitialises_the_heads(network):
    """Two agents with different weights reset at the same step get the same fresh weights:
    the same heads, and encoders whose 2 * after - before (the fresh part) is the same."""
    a, b = make_agent(compile=False, network=network), make_agent(compile=False, network=network)
    b.learn(fixed_batch())
    before_a, before_b = named(a.online), named(b.online)
    a.reset(1000)
    b.reset(1000)
    after_a, after_b = named(a.online), named(b.online)
    for name in after_a:
        if name.startswith("features."):
            fresh_a = 2 * after_a[name] - before_a[name]
            torch.testing.assert_close(fresh_a, 2 * after_b[name] - before_b[name])
            assert not torch.allclose(fresh_a, before_a[name])  # a new draw, not the old init
        else:
            assert torch.equal(after_a[name], after_b[name])
            assert not torch.equal(after_a[name], before_a[name])


def test_reset_is_a_function_of_seed_and_step_and_leaves_other_state_alone():
    agent, twin = make_agent(compile=False), make_agent(compile=False)
    agent.learn(fixed_batch())
    twin.learn(fixed_batch())
    target_before = named(agent.target)
    rng_before = torch.get_rng_state()
    agent.reset(500)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is untouched
    assert all(torch.equal(v, named(agent.target)[k]) for k, v in target_before.items())
    assert not agent.optimizer.state  # Adam's moments described the old weights
    twin.reset(500)
    assert all(torch.equal(v, named(twin.online)[k]) for k, v in named(agent.online).items())
    other = make_agent(compile=False)
    other.learn(fixed_batch())
    other.reset(600)  # another step, other fresh weights
    assert not torch.equal(named(other.online)["value.0.weight"],
                           named(agent.online)["value.0.weight"])
    batch = fixed_batch(seed=1)
    assert agent.learn(batch).loss == twin.learn(batch).loss  # and learning goes on


def memory_batch(n_step: int, size: int = 16):
    from atari_dqn.replay import ReplayMemory

    rng = np.random.default_rng(1)
    memory = ReplayMemory(200, frame_shape=(84, 84), stack=4, seed=0, n_step=n_step)
    memory.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    for i in range(100):
        memory.append(int(rng.integers(N_ACTIONS)), float(rng.choice([-1.0, 0.0, 1.0])),
                      rng.integers(0, 256, (84, 84), dtype=np.uint8), terminated=(i % 37 == 36))
        if i % 37 == 36:
            memory.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    return memory.sample(size)


@pytest.mark.parametrize("n_step", [1, 3])
def test_a_one_step_batch_goes_to_the_device_as_one_buffer_and_learns_the_same(n_step,
                                                                               monkeypatch):
    batch = memory_batch(n_step)
    copied = SimpleNamespace(**{k: np.ascontiguousarray(getattr(batch, k)) for k in
                                ("states", "next_states", "actions", "rewards", "discounts")})
    reference = make_agent()
    expected = reference.learn(copied)
    agent = make_agent()
    shapes = []
    tensor = agent._tensor
    monkeypatch.setattr(agent, "_tensor", lambda a: shapes.append(a.shape) or tensor(a))
    stats = agent.learn(batch)
    frames = [shape for shape in shapes if len(shape) == 4]
    # n_step 1: states and next_states are views of one (B, 5, 84, 84) buffer, copied once
    assert frames == ([(16, 5, 84, 84)] if n_step == 1 else [(16, 4, 84, 84)] * 2)
    assert stats.loss == expected.loss
    assert all(torch.equal(a, b) for a, b in zip(params(agent.online), params(reference.online)))
