"""Heads (atari_dqn/learn/heads/): each against its paper's formula on hand-made tensors, every
registered head through the agent and policy.load, and IQN's randomness (seeded, resumable, and
for acting a pure function of the caller's rng)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
from atari_dqn import policy
from atari_dqn.config import Config
from atari_dqn.learn import registry
from atari_dqn.learn.agent import network_of
from atari_dqn.learn.heads import iqn
from atari_dqn.learn.heads.iqn import IQNNetwork, acting_taus
from atari_dqn.learn.heads.quantile import quantile_huber_loss
from atari_dqn.learn.heads.scalar import ScalarHead
from atari_dqn.modes.one_process import train
from learning_batches import huber, seeded_agent, small_batch

N_ACTIONS = 4
FRAMES = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8,
                       generator=torch.Generator().manual_seed(0))


make_agent = partial(seeded_agent, N_ACTIONS, n_quantiles=5)
tiny_batch = partial(small_batch, N_ACTIONS)


# --- the registry ------------------------------------------------------------------------------

def test_config_takes_its_head_choices_from_the_registry_without_importing_torch():
    field = Config.__dataclass_fields__["head"]
    assert field.metadata["choices"] == tuple(registry.HEADS) == ("scalar", "quantile", "iqn")
    code = "import sys, atari_dqn.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("head", list(registry.HEADS))
def test_every_registered_head_builds_an_agent_that_learns_one_step(head):
    agent = make_agent(head=head)
    before = [p.detach().clone() for p in agent.online.parameters()]
    stats = agent.learn(tiny_batch())
    assert math.isfinite(stats.loss) and math.isfinite(stats.mean_q)
    assert stats.td_errors.shape == (4,) and (stats.td_errors >= 0).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters()))
    actions = agent.act_batch(tiny_batch().states, 0.0, np.random.default_rng(0))
    assert actions.shape == (4,) and ((0 <= actions) & (actions < N_ACTIONS)).all()


@pytest.mark.parametrize("head", list(registry.HEADS))
@pytest.mark.parametrize("dueling", [False, True])
def test_every_registered_head_loads_through_policy_with_and_without_its_config(head, dueling,
                                                                                tmp_path):
    config = Config(out_dir=str(tmp_path), head=head, n_quantiles=3, dueling=dueling)
    network = network_of(N_ACTIONS, config).eval()
    state = network.state_dict()
    assert all(key in state for key in registry.head_class(head).OWN_KEYS)
    for folder, with_config in ((tmp_path / "with", True), (tmp_path / "without", False)):
        folder.mkdir()
        torch.save(state, folder / "model_001.pt")
        if with_config:
            (folder / "config.json").write_text(config.to_json())
        loaded = policy.load(folder)
        assert type(loaded) is type(network)
        with torch.no_grad():
            torch.testing.assert_close(loaded(FRAMES), network(FRAMES))


# --- scalar (DQN) --------------------------------------------------------------------------------

def test_scalar_td_loss_is_the_huber_loss_and_its_priority_the_absolute_td_error():
    head = ScalarHead(Config(out_dir="x", head="scalar"), torch.device("cpu"))
    chosen, targets = torch.tensor([[0.0], [1.0], [-2.0]]), torch.tensor([[0.5], [4.0], [-2.25]])
    losses, priorities = head.td_losses(chosen, None, targets)
    # |u| = 0.5, 3, 0.25: u^2 / 2 inside 1, |u| - 1/2 beyond
    torch.testing.assert_close(losses, torch.tensor([0.125, 2.5, 0.03125]))
    torch.testing.assert_close(priorities, torch.tensor([0.5, 3.0, 0.25]))


# --- quantile (QR-DQN) ---------------------------------------------------------------------------

def test_quantile_huber_loss_on_two_quantiles_worked_out_by_hand():
    # two predicted quantiles at tau 1/4 and 3/4, both 0; targets 2 and -0.5:
    #   u = 2:    huber 1.5,   weight |tau - 0|  -> 0.25 * 1.5 = 0.375   and 0.75 * 1.5 = 1.125
    #   u = -0.5: huber 0.125, weight |tau - 1|  -> 0.75 * 0.125 = 0.09375, 0.25 * 0.125 = 0.03125
    # mean over targets, sum over predictions: (0.375 + 0.09375) / 2 + (1.125 + 0.03125) / 2
    loss = quantile_huber_loss(torch.zeros(1, 2), torch.tensor([[2.0, -0.5]]),
                               torch.tensor([0.25, 0.75]))
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(0.8125)


def test_one_median_quantile_is_half_the_huber_loss():
    predicted, targets = torch.tensor([[0.3], [-2.0]]), torch.tensor([[1.0], [4.0]])
    loss = quantile_huber_loss(predicted, targets, torch.tensor([0.5]))
    huber_loss = F.smooth_l1_loss(predicted, targets, reduction="none").squeeze(1)
    torch.testing.assert_close(loss, 0.5 * huber_loss)


def test_the_quantile_loss_pulls_a_quantile_towards_its_level():
    """With targets 0..99, the tau = 0.9 quantile's gradient points towards the 90th value."""
    predicted = torch.full((1, 1), 50.0, requires_grad=True)
    quantile_huber_loss(predicted, torch.arange(100.0)[None], torch.tensor([0.9])).sum().backward()
    assert predicted.grad.item() < 0  # raising it lowers the loss


# --- IQN ---------------------------------------------------------------------------------------

def test_iqn_loss_at_sampled_levels_per_transition_worked_out_by_hand():
    """IQN's loss (Dabney et al. 2018, eq. 3) is QR's at each transition's own sampled taus.
    Samples z = (0, 1), targets (0.5, 3); row 0 at taus (0.1, 0.6), row 1 at (0.9, 0.2):
      row 0: z=0, tau .1: u .5 -> .1 * .125, u 3 -> .1 * 2.5: mean .13125
             z=1, tau .6: u -.5 -> .4 * .125, u 2 -> .6 * 1.5: mean .475       sum .60625
      row 1: z=0, tau .9: .9 * .125, .9 * 2.5: mean 1.18125
             z=1, tau .2: .8 * .125, .2 * 1.5: mean .2                          sum 1.38125
    priority: mean |u| = (.5 + 3 + .5 + 2) / 4 = 1.5 for both rows."""
    head = iqn.IQNHead(Config(out_dir="x", head="iqn"), torch.device("cpu"))
    z = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    targets = torch.tensor([[0.5, 3.0], [0.5, 3.0]])
    taus = torch.tensor([[0.1, 0.6], [0.9, 0.2]])
    losses, priorities = head.td_losses(z, taus, targets)
    torch.testing.assert_close(losses, torch.tensor([0.60625, 1.38125]))
    torch.testing.assert_close(priorities, torch.tensor([1.5, 1.5]))


def test_iqn_cosine_embedding_is_the_papers_formula():
    """phi(tau)_j = ReLU(sum_{i=0}^{63} cos(pi i tau) w_ij + b_j), IQN's eq. 4."""
    torch.manual_seed(0)
    net = IQNNetwork(N_ACTIONS)
    w = net.tau_embedding.weight.detach().double().numpy()  # (n_features, 64)
    b = net.tau_embedding.bias.detach().double().numpy()
    assert w.shape == (net.n_features, iqn.EMBEDDING_SIZE) == (3136, 64)
    taus = [0.0, 0.3, 0.75]
    phi = net.embed(torch.tensor([taus])).detach()  # (1, 3, n_features)
    for t, tau in enumerate(taus):
        for j in (0, 1, 100, 3135):
            expected = max(0.0, sum(math.cos(math.pi * i * tau) * w[j, i] for i in range(64))
                           + b[j])
            assert phi[0, t, j].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("dueling", [False, True])
def test_iqn_values_are_the_features_times_the_embedding_through_the_streams(dueling):
    """Z_tau(s, .) = f(psi(s) * phi(tau)) for each tau of each state; dueling per tau: the
    value plus the advantages less their mean over actions."""
    torch.manual_seed(0)
    net = IQNNetwork(N_ACTIONS, dueling=dueling)
    taus = torch.tensor([[0.1, 0.5], [0.9, 0.25], [0.0, 0.7]])
    with torch.no_grad():
        values = net.at(FRAMES, taus)
        assert values.shape == (3, N_ACTIONS, 2)
        x = net.features(FRAMES.float() / 255.0)
        for b in range(3):
            for t in range(2):
                h = x[b] * net.embed(taus[b:b + 1, t:t + 1])[0, 0]
                if dueling:
                    advantage = net.advantage(h)
                    expected = net.value(h) + advantage - advantage.mean()
                else:
                    expected = net.head(h)
                torch.testing.assert_close(values[b, :, t], expected, rtol=1e-5, atol=1e-5)
        # Q: the mean over the taus given, or forward's fixed ones
        torch.testing.assert_close(net(FRAMES, taus), values.mean(dim=2))
        fixed = net.at(FRAMES, net.fixed_taus.expand(3, -1)).mean(dim=2)
        assert torch.equal(net(FRAMES), fixed) and torch.equal(net(FRAMES), net(FRAMES))


def test_iqn_acting_reads_the_rng_without_advancing_it_and_is_a_function_of_its_state():
    torch.manual_seed(0)
    net = IQNNetwork(N_ACTIONS).eval()
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    with torch.no_grad():
        q = net.q_values(FRAMES, rng)
        assert rng.bit_generator.state == twin.bit_generator.state  # not advanced
        taus = np.random.Generator(twin.bit_generator.jumped()).random((3, iqn.ACT_SAMPLES),
                                                                       dtype=np.float32)
        assert torch.equal(acting_taus(rng, 3), torch.from_numpy(taus))
        torch.testing.assert_close(q, net(FRAMES, torch.from_numpy(taus)))
        assert torch.equal(q, net.q_values(FRAMES, np.random.default_rng(5)))
        rng.random()  # another state, other taus
        assert not torch.equal(q, net.q_values(FRAMES, rng))
        assert net.samples(FRAMES, twin).shape == (3, N_ACTIONS, iqn.ACT_SAMPLES)


def test_iqn_epsilon_greedy_uses_the_rng_as_every_head_does():
    """epsilon_greedy's promise: the rng's use depends on epsilon alone, whatever the head."""
    states = tiny_batch(size=6).states
    used = []
    for head in ("scalar", "iqn"):
        agent, rng = make_agent(head=head), np.random.default_rng(3)
        for epsilon in (0.0, 0.5, 0.5, 1.0):
            agent.act_batch(states, epsilon, rng)
        used.append(rng.bit_generator.state)
    assert used[0] == used[1]


def reference_iqn_learn(online, target, batch, levels, double_q) -> tuple[float, np.ndarray]:
    """The loss and priorities of one IQN update, written out: levels[net] the taus the update
    drew for that network, double_q the online Q-values it chose a* by at the next states."""
    with torch.no_grad():
        z = online.at(torch.from_numpy(batch.states), levels["online"]).numpy()
        z_next = target.at(torch.from_numpy(batch.next_states), levels["target"]).numpy()
    taus = levels["online"].numpy()
    losses, priorities = [], []
    for b in range(len(batch.actions)):
        best = int(np.argmax(double_q[b]))
        target_samples = batch.rewards[b] + batch.discounts[b] * z_next[b, best]
        predicted = z[b, batch.actions[b]]
        total = sum(abs(taus[b, i] - (u < 0)) * huber(u) for i in range(len(predicted))
                    for u in [float(t) - float(predicted[i]) for t in target_samples])
        losses.append(total / len(target_samples))
        priorities.append(np.mean([abs(float(t) - float(p)) for p in predicted
                                   for t in target_samples]))
    return float(np.mean(losses)), np.array(priorities, np.float32)


def test_iqn_learn_matches_the_written_out_update(monkeypatch):
    """With N = N' = 3 and K = 2 taus: the agent's loss and priorities are the quantile Huber
    loss of the taken action's samples at the online taus against r + d * Z_target(s', a*) at
    the target taus, a* the argmax of the online Q at the next states (Double DQN)."""
    monkeypatch.setattr(iqn, "LEARN_SAMPLES", 3)
    monkeypatch.setattr(iqn, "ACT_SAMPLES", 2)
    agent = make_agent(head="iqn", dueling=True)
    online, target = copy.deepcopy(agent.online), copy.deepcopy(agent.target)
    levels, chooser = {}, []
    values, q_values = agent.head.values, agent.head.q_values

    def recording_values(network, states):
        samples = values(network, states)
        levels["online" if network is agent.online else "target"] = samples.levels.clone()
        return samples

    def recording_q_values(network, states):
        assert network is agent.online  # Double DQN's chooser
        q = q_values(network, states)
        chooser.append(q.detach().numpy().copy())
        return q

    monkeypatch.setattr(agent.head, "values", recording_values)
    monkeypatch.setattr(agent.head, "q_values", recording_q_values)
    batch = tiny_batch()
    stats = agent.learn(batch)
    assert levels["online"].shape == levels["target"].shape == (4, 3)
    assert not torch.equal(levels["online"], levels["target"])  # independent draws
    expected_loss, expected_priorities = reference_iqn_learn(online, target, batch, levels,
                                                             chooser[0])
    assert stats.loss == pytest.approx(expected_loss, rel=1e-4)
    np.testing.assert_allclose(stats.td_errors, expected_priorities, rtol=1e-4)


def test_iqn_learning_is_reproducible_and_resumes_exactly():
    """The learning taus' generator is seeded from --seed and travels in state_dict()."""
    batches = [tiny_batch(seed=s) for s in range(4)]
    a, b = make_agent(head="iqn"), make_agent(head="iqn")
    assert [a.learn(x).loss for x in batches[:2]] == [b.learn(x).loss for x in batches[:2]]
    resumed = make_agent(head="iqn", seed=9)
    assert "head" in a.state_dict() and "head" not in make_agent(head="quantile").state_dict()
    resumed.load_state_dict(a.state_dict())
    assert [a.learn(x).loss for x in batches[2:]] == [resumed.learn(x).loss for x in batches[2:]]
    assert all(torch.equal(p, q) for p, q in zip(a.online.parameters(),
                                                resumed.online.parameters()))
    # the same weights (torch's seed), another --seed: other taus
    assert make_agent(head="iqn", seed=1).learn(batches[0]).loss != \
        make_agent(head="iqn").learn(batches[0]).loss


def test_compiled_iqn_agent_learns_and_acts_as_the_eager_one(monkeypatch):
    monkeypatch.setattr(iqn, "LEARN_SAMPLES", 4)
    eager, compiled = make_agent(head="iqn"), make_agent(head="iqn", compile=True)
    compiled.load_state_dict(eager.state_dict())
    batch = tiny_batch()
    a, b = eager.learn(batch), compiled.learn(batch)
    assert b.loss == pytest.approx(a.loss, rel=1e-4)
    np.testing.assert_allclose(a.td_errors, b.td_errors, rtol=1e-4, atol=1e-4)
    for p, q in zip(eager.online.parameters(), compiled.online.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    states = batch.states[:1]
    with torch.inference_mode():
        torch.testing.assert_close(
            eager.online.q_values(torch.from_numpy(states), np.random.default_rng(1)),
            compiled.online.q_values(torch.from_numpy(states), np.random.default_rng(1)),
            rtol=1e-4, atol=1e-5)


# --- end to end: IQN and Munchausen runs resume exactly ---------------------------------------

TINY = ["--steps", "200", "--learning-starts", "100", "--memory-size", "1000",
        "--batch-size", "4", "--target-update", "40", "--eps-decay", "50",
        "--eval-every", "100", "--eval-episodes", "1", "--eval-max-steps", "60",
        "--eval-eps", "0.3", "--seed", "3", "--threads", "1", "--no-compile"]


@pytest.mark.parametrize("flags", [["--head", "iqn"], ["--munchausen"]])
def test_a_run_with_the_part_resumes_exactly_and_repeats_bit_for_bit(flags, tmp_path):
    """An uninterrupted run, and a run stopped past its first evaluation and resumed: the same
    scores and the same weights bit for bit (which also makes the first part of the second a
    repeat of the first run on this CPU)."""
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert main.main([*TINY, *flags, "--out", str(reference)]) == 0
    config = Config(**vars(main.build_parser().parse_args([*TINY, *flags, "--out",
                                                           str(interrupted)])))
    result = train(config, stop_when=lambda step: step == 130)
    assert result.stopped_early and result.steps == 130
    assert main.main(["--resume", str(interrupted)]) == 0
    assert (interrupted / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    for name in ("model_001.pt", "model_002.pt"):
        a = torch.load(reference / name, weights_only=True)
        b = torch.load(interrupted / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
