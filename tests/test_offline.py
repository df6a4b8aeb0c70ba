"""Offline training (atari_dqn/modes/offline.py): tiny runs on small datasets made here, resume, bad
DATA, the CQL and BC losses, the dataset left untouched, Q-values against returns."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from atari_dqn import dataset as datasets
from atari_dqn import policy
from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent
from atari_dqn.learn.losses.bc import bc_losses
from atari_dqn.learn.losses.cql import cql_penalty
from atari_dqn.modes.offline import sha256_of, train_offline
from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory
from atari_dqn.run.checkpoint import read_checkpoint
from tests.test_train_e2e import sigterm_at_the_first_evaluation

TRANSITIONS = 300
BREAKOUT_ACTIONS = 4
TINY = ["--updates", "40", "--eval-every", "20", "--target-update", "10", "--batch-size", "8",
        "--eval-episodes", "1", "--eval-max-steps", "30", "--seed", "3", "--threads", "1",
        "--no-compile"]


def make_dataset(path: Path, *, prioritized: bool = False, n_step: int = 3,
                 seed: int = 0) -> Path:
    """A snapshot of TRANSITIONS synthetic Breakout-shaped transitions: random frames, random
    actions of Breakout's 4, rewards in {0, 1}, an episode ending about every 30 steps."""
    rng = np.random.default_rng(seed)
    kind = PrioritizedReplayMemory if prioritized else ReplayMemory
    memory = kind(TRANSITIONS, n_step=n_step, gamma=0.99, seed=seed)

    def frame() -> np.ndarray:
        return rng.integers(0, 256, (84, 84), dtype=np.uint8)

    memory.start_episode(frame())
    for _ in range(TRANSITIONS):
        over = bool(rng.random() < 1 / 30)
        memory.append(int(rng.integers(BREAKOUT_ACTIONS)), float(rng.integers(2)), frame(), over)
        if over:
            memory.start_episode(frame())
    memory.save(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "data.bin")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """A straight --loss dqn run: what a stopped and resumed one must reproduce."""
    run = tmp_path_factory.mktemp("runs") / "dqn"
    assert main.main(["--offline", str(data), "--loss", "dqn", *TINY, "--out", str(run)]) == 0
    return run


def same_models(run_a: Path, run_b: Path, names=("model_001.pt", "model_002.pt")) -> bool:
    for name in names:
        a = torch.load(run_a / name, weights_only=True)
        b = torch.load(run_b / name, weights_only=True)
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            return False
    return True


# --- runs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["cql", "bc"])
def test_each_loss_trains_and_writes_a_run_folder_leaving_the_dataset_untouched(
        loss, data, tmp_path):
    before = (data.read_bytes(), os.stat(data).st_mtime_ns)
    run = tmp_path / loss
    assert main.main(["--offline", str(data), "--loss", loss, *TINY, "--out", str(run)]) == 0
    assert (data.read_bytes(), os.stat(data).st_mtime_ns) == before
    lines = (run / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["1", "20"], ["2", "40"]]  # updates
    for name in ("rewards.png", "model_001.pt", "model_002.pt", "final_model.pt"):
        assert (run / name).is_file(), name
    assert not list(run.glob("replay-*.bin"))  # no copy of the dataset
    config = json.loads((run / "config.json").read_text())
    assert config["offline"] == str(data.resolve())
    assert config["offline_bytes"] == data.stat().st_size
    assert config["offline_sha256"] == sha256_of(data)
    assert config["offline_transitions"] == len(ReplayMemory.load(data))
    assert config["loss"] == loss and config["n_step"] == 3  # the snapshot's
    checkpoint = read_checkpoint(run)
    assert checkpoint["progress"]["step"] == 40
    assert checkpoint["progress"]["unit"] == "gradient updates"  # rewards.png's x axis
    assert checkpoint["offline"]["sha256"] == config["offline_sha256"]
    # play's loader takes the result
    network = policy.load(run)
    assert network(torch.zeros(1, 4, 84, 84, dtype=torch.uint8)).shape == (1, BREAKOUT_ACTIONS)


def test_the_dqn_run_learns_from_the_data(reference, data):
    """The TD loss moved the network: its models differ, and the dataset is unchanged."""
    first = torch.load(reference / "model_001.pt", weights_only=True)
    last = torch.load(reference / "final_model.pt", weights_only=True)
    assert any(not torch.equal(first[k], last[k]) for k in first)
    assert read_checkpoint(reference)["offline"]["sha256"] == sha256_of(data)


def test_a_run_folder_as_data_means_its_latest_snapshot(data, tmp_path):
    folder = tmp_path / "online-run"
    folder.mkdir()
    (folder / "replay-000000100.bin").write_bytes(b"old and unreadable")
    (folder / "replay-000001000.bin").write_bytes(data.read_bytes())
    run = tmp_path / "run"
    assert main.main(["--offline", str(folder), *TINY, "--updates", "20",
                      "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["offline"] == str((folder / "replay-000001000.bin").resolve())


def test_stopped_anywhere_and_resumed_equals_the_straight_run(reference, data, tmp_path):
    run = tmp_path / "stopped"
    config = Config(**vars(main.build_parser().parse_args(
        ["--offline", str(data), *TINY, "--out", str(run)])))
    result = train_offline(config, {}, stop_when=lambda update: update == 27)
    assert result.stopped_early and result.steps == 27
    assert read_checkpoint(run)["progress"]["step"] == 27
    assert main.main(["--resume", str(run), "--updates", "40", "--threads", "1"]) == 0
    assert (run / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    assert same_models(run, reference)


def test_sigterm_writes_a_checkpoint_that_resumes_exactly(reference, data, tmp_path):
    run = tmp_path / "sigterm"
    args = ["--offline", str(data), *TINY, "--updates", "100000", "--out", str(run)]
    text = sigterm_at_the_first_evaluation(args)  # exit 143, no traceback
    stops = [int(m.group(1)) for m in map(re.compile(r"^stopped at update (\d+);").match,
                                          text.splitlines()) if m]
    assert len(stops) == 1 and 20 <= stops[0] < 40, text
    assert read_checkpoint(run)["progress"]["step"] == stops[0]
    # uniform sampling does not depend on --updates: the reference's length
    assert main.main(["--resume", str(run), "--updates", "40", "--threads", "1"]) == 0
    assert (run / "rewards.txt").read_text() == (reference / "rewards.txt").read_text()
    assert same_models(run, reference)


def test_prioritized_quantile_augmented_run_stops_and_resumes(tmp_path):
    data = make_dataset(tmp_path / "prioritized.bin", prioritized=True)
    flags = ["--offline", str(data), *TINY, "--prioritized", "--head", "quantile",
             "--quantiles", "8", "--augment", "--loss", "cql"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main.main([*flags, "--out", str(straight)]) == 0
    config = Config(**vars(main.build_parser().parse_args([*flags, "--out", str(stopped)])))
    assert train_offline(config, {}, stop_when=lambda update: update == 27).steps == 27
    td = read_checkpoint(stopped)["offline"]["sampler"]["td_errors"]
    assert td.shape == (len(PrioritizedReplayMemory.load(data).export_log()["ids"]),)
    assert not torch.all(td == 1.0)  # the updates' |TD errors| replaced the equal start
    assert main.main(["--resume", str(stopped), "--threads", "1"]) == 0
    assert (stopped / "final_model.pt").is_file()
    assert len((stopped / "rewards.txt").read_text().splitlines()) == 2


def test_resume_refuses_a_changed_dataset(data, tmp_path, capsys):
    copy = tmp_path / "copy.bin"
    copy.write_bytes(data.read_bytes())
    run = tmp_path / "run"
    config = Config(**vars(main.build_parser().parse_args(
        ["--offline", str(copy), *TINY, "--out", str(run)])))
    train_offline(config, {}, stop_when=lambda update: update == 5)
    make_dataset(copy.with_name("other.bin"), seed=1).replace(copy)
    assert main.main(["--resume", str(run), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("main.py: error: --resume: ") and "not the dataset" in err
    assert err.count("\n") == 1


# --- bad DATA and flags: one line, status 2, no run folder ---------------------------------------

def bad_files(data: Path, folder: Path) -> dict[str, Path]:
    raw = data.read_bytes()
    files = {"missing": folder / "missing.bin", "truncated": folder / "truncated.bin",
             "random bytes": folder / "random.bin", "not a snapshot": folder / "notes.txt",
             "corrupt": folder / "corrupt.bin", "empty folder": folder / "empty"}
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(len(raw)))
    files["not a snapshot"].write_text("a text file, not a replay memory\n")
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    files["corrupt"].write_bytes(bytes(flipped))
    files["empty folder"].mkdir()
    return files


@pytest.mark.parametrize("case", ["missing", "truncated", "random bytes", "not a snapshot",
                                  "corrupt", "empty folder"])
def test_bad_data_exits_2_with_one_line_before_a_run_folder(case, data, tmp_path, capsys):
    path = bad_files(data, tmp_path)[case]
    run = tmp_path / "run"
    assert main.main(["--offline", str(path), *TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("main.py: error: --offline ") and err.count("\n") == 1, err
    assert not run.exists()


@pytest.mark.parametrize("args, message", [
    (["--steps", "100"], "--steps cannot be given with --offline"),
    (["--envs", "2"], "--envs cannot be given with --offline"),
    (["--learning-starts", "0"], "--learning-starts cannot be given with --offline"),
    (["--train-every", "1"], "--train-every cannot be given with --offline"),
    (["--n-step", "1"], "was built with --n-step 3"),
    (["--gamma", "0.9"], "was built with --gamma 0.99"),
    (["--prioritized"], "is a uniform memory"),
    (["--prioritized", "--loss", "bc"], "--prioritized cannot be used with --loss bc"),
    (["--updates", "0"], "--updates must be a positive integer"),
    (["--cql-alpha", "-1"], "--cql-alpha must not be negative"),
    (["--batch-size", "1000"], "fewer than --batch-size 1000"),
])
def test_bad_offline_flags_exit_2_with_one_line(args, message, data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main.main(["--offline", str(data), *TINY, *args, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("main.py: error: ") and message in err and err.count("\n") == 1, err
    assert not run.exists()


@pytest.fixture
def evaluated_under(monkeypatch) -> list[str]:
    """The protocols of the evaluation games made (recorded as EvalEnvs is built)."""
    from atari_dqn.envs import atari as envs

    made, real = [], envs.EvalEnvs.__init__

    def recording(self, *args, protocol=envs.DEEPMIND, **kwargs):
        made.append(protocol.name)
        real(self, *args, protocol=protocol, **kwargs)

    monkeypatch.setattr(envs.EvalEnvs, "__init__", recording)
    return made


@pytest.mark.parametrize("beside, given, expected", [
    ({"data.bin.json": {"source": "DQN Replay Dataset", "protocol": "machado"}}, [], "machado"),
    ({"config.json": {"protocol": "machado"}}, [], "machado"),   # a run's snapshot: its run's
    ({"config.json": {"protocol": "machado"}}, ["--protocol", "machado"], "machado"),
    ({"config.json": {"seed": 1}}, [], "deepmind"),  # a run from before --protocol
    ({}, [], "deepmind"),  # nothing says: --protocol, default deepmind
    ({}, ["--protocol", "machado"], "machado"),
], ids=["imported", "run", "run-agreeing-flag", "old-run", "unknown", "unknown-flag"])
def test_an_offline_run_evaluates_under_its_datasets_protocol(beside, given, expected, data,
                                                              tmp_path, evaluated_under):
    folder = tmp_path / "data"
    folder.mkdir()
    snapshot = folder / "data.bin"
    snapshot.write_bytes(data.read_bytes())
    for name, content in beside.items():
        (folder / name).write_text(json.dumps(content))
    run = tmp_path / "run"
    args = ["--offline", str(snapshot), *TINY, "--updates", "2", "--eval-every", "2", *given]
    assert main.main([*args, "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["protocol"] == expected
    assert evaluated_under == [expected]
    assert not (run / "episodes.csv").exists()  # offline runs play no training games
    assert main.main(["--resume", str(run), "--updates", "4"]) == 0  # the run keeps it
    assert evaluated_under == [expected, expected]


def test_a_protocol_other_than_the_datasets_is_refused_before_a_run_folder(data, tmp_path,
                                                                             capsys):
    snapshot = tmp_path / "data.bin"
    snapshot.write_bytes(data.read_bytes())
    (tmp_path / "data.bin.json").write_text(json.dumps({"protocol": "machado"}))
    run = tmp_path / "run"
    assert main.main(["--offline", str(snapshot), *TINY, "--protocol", "deepmind",
                      "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol deepmind: the snapshot" in err
    assert "played under --protocol machado" in err and "data.bin.json says so" in err
    assert not run.exists()
    (tmp_path / "data.bin.json").write_text(json.dumps({"protocol": "atari"}))
    assert main.main(["--offline", str(snapshot), *TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its protocol is 'atari'" in err and not run.exists()


def test_offline_flags_without_offline_are_refused(tmp_path, capsys):
    for args in (["--loss", "cql"], ["--cql-alpha", "4"], ["--updates", "10"]):
        assert main.main([*args, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert "is for offline training" in err and err.count("\n") == 1


# --- the losses ----------------------------------------------------------------------------------

def test_cql_penalty_by_hand():
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    actions = torch.tensor([1, 0])
    # row 0: log(e^1 + e^2) - 2 = log(1 + e^-1); row 1: log 2 - 0
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert cql_penalty(q, actions).item() == pytest.approx(expected, rel=1e-6)
    assert cql_penalty(torch.tensor([[5.0, -50.0]]), torch.tensor([0])).item() == \
        pytest.approx(0.0, abs=1e-6)  # the data's action dominates: nothing to push down


def test_bc_losses_by_hand():
    q = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    losses = bc_losses(q, torch.tensor([1, 0]))
    # softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2]
    assert losses.tolist() == pytest.approx([-math.log(0.75), math.log(2)], rel=1e-6)


class TinyBatch:
    def __init__(self, rng: np.random.Generator, size: int = 4) -> None:
        self.states = rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8)
        self.next_states = rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8)
        self.actions = rng.integers(0, BREAKOUT_ACTIONS, size).astype(np.int64)
        self.rewards = rng.random(size).astype(np.float32)
        self.discounts = np.full(size, 0.99, np.float32)


@pytest.mark.parametrize("head", ["scalar", "quantile"])
def test_cql_loss_is_the_td_loss_plus_alpha_times_the_penalty(head):
    """The same agent and batch under --loss dqn and --loss cql: the losses differ by exactly
    alpha * cql_penalty of the Q-values before the update (a quantile head's: their mean)."""
    batch = TinyBatch(np.random.default_rng(0))
    alpha = 4.0
    agents = {}
    for loss in ("dqn", "cql"):
        torch.manual_seed(0)
        agents[loss] = Agent(BREAKOUT_ACTIONS, Config(loss=loss, cql_alpha=alpha, head=head,
                                                      n_quantiles=8, compile=False),
                             torch.device("cpu"))
    with torch.no_grad():
        states = torch.from_numpy(batch.states)
        net = agents["cql"].online
        q_all = net(states) if head == "scalar" else net.quantiles(states).mean(dim=2)
        penalty = cql_penalty(q_all, torch.from_numpy(batch.actions)).item()
    td = agents["dqn"].learn(batch).loss
    cql = agents["cql"].learn(batch).loss
    assert penalty > 0
    assert cql == pytest.approx(td + alpha * penalty, rel=1e-5)


def test_bc_learning_makes_the_data_actions_likelier():
    batch = TinyBatch(np.random.default_rng(1), size=8)
    torch.manual_seed(0)
    agent = Agent(BREAKOUT_ACTIONS, Config(loss="bc", lr=1e-3, compile=False),
                  torch.device("cpu"))
    with torch.no_grad():
        expected = bc_losses(agent.online(torch.from_numpy(batch.states)),
                             torch.from_numpy(batch.actions)).mean().item()
    first = agent.learn(batch).loss
    assert first == pytest.approx(expected, rel=1e-5)
    for _ in range(20):
        last = agent.learn(batch).loss
    assert last < first


# --- Q-values against the data's returns ---------------------------------------------------------

def test_discounted_returns_by_hand():
    log = {"ids": np.arange(6), "streams": np.zeros(6, np.uint16),
           "rewards": np.array([1, 0, 1, 1, 1, 0], np.float32),
           "terminated": np.array([0, 0, 1, 0, 0, 0], bool),
           "truncated": np.array([0, 0, 0, 0, 1, 0], bool),
           "episode_start": np.array([1, 0, 0, 1, 0, 1], bool)}
    returns = datasets.discounted_returns(log, gamma=0.5)
    # episode 0..2 ends in a terminal: 1 + 0.5*0 + 0.25*1; 3..4 truncated; 5 in progress
    assert returns[:3].tolist() == [1.25, 0.5, 1.0]
    assert np.isnan(returns[3:]).all()


def test_q_against_returns_of_a_trained_model(reference, data, capsys):
    memory = ReplayMemory.load(data)
    returns = datasets.discounted_returns(memory.export_log(), memory.gamma)
    network = policy.load(reference)
    result = datasets.q_against_returns(memory, network, samples=200, batch_size=64)
    assert 0 < result.transitions <= 200
    known = returns[~np.isnan(returns)]
    assert known.min() <= result.mean_return <= known.max()
    assert math.isfinite(result.mean_q) and result.mean_max_q >= result.mean_q
    assert datasets.main(["qvalues", str(data), str(reference), "--samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "mean Q(s, a_data)" in out and "mean discounted return" in out
    assert datasets.main(["qvalues", str(data), str(data)]) == 2
    assert capsys.readouterr().err.startswith("dataset: error: ")


class ConstantQ(torch.nn.Module):
    """Q(s, a) = value for every state and action (a parameter: q_against_returns reads its device)."""

    def __init__(self, value: float, n_actions: int = 4):
        super().__init__()
        self.value = torch.nn.Parameter(torch.full((n_actions,), value))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.value.detach().expand(len(states), -1)


def test_q_against_returns_standard_error_is_the_returns_spread(data):
    # With a constant Q the per-transition gap is Q - return: its standard error is the
    # returns' own, whatever the constant, and the mean gap moves with the constant.
    memory = ReplayMemory.load(data)
    low, high = (datasets.q_against_returns(memory, ConstantQ(value), samples=300, batch_size=64)
                 for value in (0.0, 100.0))
    assert low.transitions == high.transitions and low.mean_return == high.mean_return
    assert low.mean_q == 0.0 and high.mean_q == high.mean_max_q == 100.0
    assert 0 < low.gap_stderr == pytest.approx(high.gap_stderr, rel=1e-9)
    assert low.gap_stderr < low.mean_return  # 300 samples: well under the mean return
    assert high.verdict() == "overestimates" and low.verdict() == "underestimates"
    at_the_mean = datasets.q_against_returns(memory, ConstantQ(low.mean_return), samples=300,
                                             batch_size=64)
    assert at_the_mean.verdict() == "within 2 standard errors of the returns"


def test_qvalues_measures_several_models_on_the_same_transitions(reference, data, capsys):
    models = [reference / "model_001.pt", reference / "model_002.pt", reference / "model_001.pt"]
    assert datasets.main(["qvalues", str(data), *map(str, models), "--samples", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 15
    q = [line for line in lines if line.startswith("mean Q(s, a_data)")]
    returns = [line for line in lines if line.startswith("mean discounted return")]
    assert q[0] == q[2] and len(set(returns)) == 1  # one sample of the data for every model
    assert q[0] != q[1]  # the two models differ


def test_qvalues_refuses_a_behaviour_cloning_model(data, tmp_path, capsys):
    run = tmp_path / "bc"
    assert main.main(["--offline", str(data), "--loss", "bc", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert datasets.main(["qvalues", str(data), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--loss bc model outputs action logits" in err
