"""Loss terms (atari_dqn/learn/losses/): each against its paper's formula on hand-made tensors,
which terms a run's settings make, and every combination through the agent with every head.
(A whole Munchausen run resuming exactly: tests/test_heads.py, beside IQN's.)"""

from __future__ import annotations

import copy
import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atari_dqn.config import Config
from atari_dqn.learn import registry
from atari_dqn.learn.losses import munchausen
from atari_dqn.learn.losses.bc import BehaviourCloning, bc_losses
from atari_dqn.learn.losses.cql import CQL, cql_penalty
from atari_dqn.learn.losses.munchausen import Munchausen, munchausen_targets
from atari_dqn.learn.losses.td import TD
from atari_dqn.learn.parts import Samples
from learning_batches import huber, seeded_agent, small_batch

N_ACTIONS = 3


make_agent = partial(seeded_agent, N_ACTIONS, n_quantiles=3)
tiny_batch = partial(small_batch, N_ACTIONS)


# --- which terms a run has -----------------------------------------------------------------------

@pytest.mark.parametrize("settings, terms", [
    (dict(), [TD]),
    (dict(munchausen=True), [Munchausen]),  # replaces td
    (dict(loss="cql"), [TD, CQL]),
    (dict(loss="cql", munchausen=True), [CQL, Munchausen]),
    (dict(loss="bc"), [BehaviourCloning]),
    (dict(loss="bc", munchausen=True), [BehaviourCloning]),  # no TD target to change
])
def test_the_settings_choose_the_terms(settings, terms):
    built = registry.loss_terms(Config(out_dir="x", **settings))
    assert [type(term) for term in built] == terms


def test_the_munchausen_flag_is_off_by_default_and_old_configs_predate_it():
    from atari_dqn.config import saved_settings

    assert Config(out_dir="x").munchausen is False
    assert saved_settings({})["munchausen"] is False


@pytest.mark.parametrize("head", list(registry.HEADS))
@pytest.mark.parametrize("settings", [dict(), dict(munchausen=True), dict(loss="cql"),
                                      dict(loss="cql", munchausen=True), dict(loss="bc")])
def test_every_term_learns_one_step_with_every_head(head, settings):
    agent = make_agent(head=head, **settings)
    stats = agent.learn(tiny_batch(), np.array([1.0, 0.5, 0.25, 1.0], np.float32))
    assert math.isfinite(stats.loss) and stats.td_errors.shape == (4,)
    assert (stats.td_errors >= 0).all()


# --- TD ------------------------------------------------------------------------------------------

def fake_step(next_values, online_next_q, rewards, discounts):
    return SimpleNamespace(next_values=Samples(torch.tensor(next_values), None), online="online",
                           next_states="s'", q_values=lambda network, states: torch.tensor(
                               online_next_q),
                           rewards=torch.tensor(rewards), discounts=torch.tensor(discounts))


def test_td_targets_bootstrap_from_the_greedy_action_or_double_dqns():
    """Two actions at s', samples (3) and (5): DQN takes the larger, 5; Double DQN takes the
    action the online network prefers, here the first: 3. Target r + d * bootstrap."""
    step = fake_step([[[3.0], [5.0]]], [[1.0, 0.0]], [1.0], [0.5])
    dqn, double = TD(Config(out_dir="x", double=False)), TD(Config(out_dir="x", double=True))
    torch.testing.assert_close(dqn.targets(step), torch.tensor([[1.0 + 0.5 * 5.0]]))
    torch.testing.assert_close(double.targets(step), torch.tensor([[1.0 + 0.5 * 3.0]]))
    # a distributional head: the chosen action's samples, each bootstrapped; chosen by the mean
    step = fake_step([[[0.0, 10.0], [4.0, 5.0]]], [[0.0, 1.0]], [0.0], [1.0])
    torch.testing.assert_close(dqn.targets(step), torch.tensor([[0.0, 10.0]]))   # mean 5 > 4.5
    torch.testing.assert_close(double.targets(step), torch.tensor([[4.0, 5.0]]))


# --- CQL and behaviour cloning -------------------------------------------------------------------

def test_cql_penalty_is_logsumexp_minus_the_data_actions_q():
    # log(e^1 + e^2) - 1 and log(e^0 + e^0) - 0, averaged
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected = ((math.log(math.e + math.e ** 2) - 1.0) + math.log(2.0)) / 2
    assert cql_penalty(q, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-6)


def test_bc_loss_is_minus_the_log_softmax_of_the_data_action():
    q = torch.tensor([[1.0, 2.0, 0.0]])
    expected = -math.log(math.e ** 2 / (math.e + math.e ** 2 + 1.0))
    assert bc_losses(q, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-6)


# --- Munchausen ----------------------------------------------------------------------------------

def softmax(q: list[float], tau: float) -> list[float]:
    exps = [math.exp((v - max(q)) / tau) for v in q]
    return [e / sum(exps) for e in exps]


def test_munchausen_target_on_two_actions_worked_out_with_explicit_softmax():
    """r + alpha * clip(tau log pi(a|s), -1, 0) + d * sum_a' pi(a'|s') (q(s', a') - tau log
    pi(a'|s')), pi = softmax(q_target / tau), alpha 0.9, tau 0.03 (Vieillard et al. 2020)."""
    alpha, tau = munchausen.ALPHA, munchausen.TAU
    assert (alpha, tau, munchausen.LOG_POLICY_CLIP) == (0.9, 0.03, -1.0)
    q_s, q_next, reward, discount, action = [1.0, 1.03], [2.0, 1.97], 1.0, 0.99 ** 3, 0
    pi_s, pi_next = softmax(q_s, tau), softmax(q_next, tau)
    bonus = alpha * min(max(tau * math.log(pi_s[action]), -1.0), 0.0)
    soft = sum(p * (q - tau * math.log(p)) for p, q in zip(pi_next, q_next))
    expected = reward + bonus + discount * soft
    assert bonus == pytest.approx(-0.9 * 0.03 * math.log(1 + math.e))  # pi(a0|s) = 1/(1+e)
    targets = munchausen_targets(torch.tensor([reward]), torch.tensor([discount]),
                                 torch.tensor([action]), torch.tensor([q_s]),
                                 torch.tensor([q_next])[:, :, None])
    assert targets.shape == (1, 1)
    assert targets.item() == pytest.approx(expected, rel=1e-6)


def test_munchausen_bonus_is_clipped_at_l0_and_a_terminal_keeps_only_the_reward_and_bonus():
    # q(s) = (0, 3): tau log pi(a0|s) = -3 - tau log(1 + e^-100) ~ -3, clipped to -1
    targets = munchausen_targets(torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([0]),
                                 torch.tensor([[0.0, 3.0]]), torch.tensor([[[7.0], [9.0]]]))
    assert targets.item() == pytest.approx(0.5 - 0.9 * 1.0)


def test_munchausen_bootstraps_each_sample_of_a_distribution_with_the_policy_of_their_mean():
    """Samples at s': action 0 (1, 3) mean 2, action 1 (0, 3.9) mean 1.95: pi from the means,
    the soft bootstrap applied to each sample j."""
    tau = munchausen.TAU
    next_values = [[1.0, 3.0], [0.0, 3.9]]
    pi = softmax([2.0, 1.95], tau)
    q_s = [0.2, 0.1]
    bonus = 0.9 * min(max(tau * math.log(softmax(q_s, tau)[1]), -1.0), 0.0)
    expected = [0.0 + bonus + 0.9 * sum(p * (next_values[a][j] - tau * math.log(p))
                                        for a, p in enumerate(pi)) for j in range(2)]
    targets = munchausen_targets(torch.tensor([0.0]), torch.tensor([0.9]), torch.tensor([1]),
                                 torch.tensor([q_s]), torch.tensor([next_values]))
    torch.testing.assert_close(targets, torch.tensor([expected]))


@pytest.mark.parametrize("head", ["scalar", "quantile"])
def test_munchausen_learn_matches_the_written_out_update(head):
    """The agent regresses Q(s, a) (each quantile) on the Munchausen target of its target
    network: the target's Q at s for the bonus, its samples at s' for the soft bootstrap."""
    agent = make_agent(head=head, munchausen=True, dueling=True)
    online, target = copy.deepcopy(agent.online), copy.deepcopy(agent.target)
    batch = tiny_batch()
    with torch.no_grad():
        z = online.samples(torch.from_numpy(batch.states)).double().numpy()
        q_s = target(torch.from_numpy(batch.states)).double().numpy()
        z_next = target.samples(torch.from_numpy(batch.next_states)).double().numpy()
    levels = (online.quantile_fractions.numpy() if head == "quantile" else None)
    losses, priorities = [], []
    for b in range(len(batch.actions)):
        a = int(batch.actions[b])
        bonus = 0.9 * min(max(0.03 * math.log(softmax(list(q_s[b]), 0.03)[a]), -1.0), 0.0)
        pi = softmax(list(z_next[b].mean(axis=1)), 0.03)
        targets = [batch.rewards[b] + bonus + batch.discounts[b] * sum(
            p * (z_next[b, a2, j] - 0.03 * math.log(p)) for a2, p in enumerate(pi))
            for j in range(z_next.shape[2])]
        predicted = z[b, a]
        if levels is None:
            losses.append(huber(targets[0] - predicted[0]))
        else:
            losses.append(sum(abs(levels[i] - (t - predicted[i] < 0)) * huber(t - predicted[i])
                              for i in range(len(predicted)) for t in targets) / len(targets))
        priorities.append(np.mean([abs(t - p) for p in predicted for t in targets]))
    stats = agent.learn(batch)
    assert stats.loss == pytest.approx(float(np.mean(losses)), rel=1e-4)
    np.testing.assert_allclose(stats.td_errors, priorities, rtol=1e-4)
