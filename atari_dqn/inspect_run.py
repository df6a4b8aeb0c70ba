"""Look inside a run: what a saved policy does, and what its prioritized memory samples.

    python -m atari_dqn.inspect_run actions <run>
        plays games of the run's last evaluation (its seeds, its epsilon, its --protocol) with
        its final model (final_model.pt, the weights that evaluation scored; without one, its
        newest model_NNN.pt) and prints, per game, its length, score, how often each action was
        taken and the mean Q-value of each action. A degenerate greedy policy (one action nearly
        always) shows at a glance. --model 3: evaluation 3 with model_003.pt.
    python -m atari_dqn.inspect_run weights <run>/replay-000200000.bin   (or <run>: its latest)
        quantiles of the priorities (p^alpha) in a prioritized replay snapshot, and the
        importance weights of sampled batches as the memory returns them (Agent.learn rescales
        them per batch)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from atari_dqn.cli import run_tool
from atari_dqn.config import Config
from atari_dqn.dataset import DatasetError, snapshot_path
from atari_dqn.envs.atari import PROTOCOLS, EvalEnvs
from atari_dqn.learn.agent import epsilon_greedy
from atari_dqn.learn.network import QNetwork
from atari_dqn.policy import FINAL_MODEL, MODEL_NAME, PolicyLoadError, load, model_file
from atari_dqn.replay import PrioritizedReplayMemory, load_snapshot
from atari_dqn.run.evaluate import NullFrameWriter, evaluate, evaluation_seeds
from atari_dqn.summary import REWARDS, RunFileError, read_rewards, read_settings

QUANTILES = (0.0, 0.01, 0.1, 0.5, 0.9, 1.0)


class InspectError(ValueError):
    """The run or snapshot cannot be inspected; the message says why, in one line."""


class _Recorder(NullFrameWriter):
    """Stands in for evaluate()'s agent and frame writer: acts as the agent does and records
    each step's actions and Q-values (one row per game), and how many frames each game had
    (its reset, then one a step while it played), so that game i's record is the first
    frames[i] - 1 steps of its row."""

    def __init__(self, network: QNetwork) -> None:
        self.network = network
        self.actions: list[np.ndarray] = []   # per step: (games,)
        self.q_values: list[np.ndarray] = []  # per step: (games, actions)
        self.frames: dict[int, int] = {}

    def capture(self, game: int, games: EvalEnvs) -> None:
        self.frames[game] = self.frames.get(game, 0) + 1

    def act_batch(self, states: np.ndarray, epsilon: float,
                  rng: np.random.Generator) -> np.ndarray:
        with torch.inference_mode():
            self.q_values.append(self.network(torch.from_numpy(states)).numpy())
        actions = epsilon_greedy(self.network, states, epsilon, rng, torch.device("cpu"))
        self.actions.append(actions)
        return actions

    def game(self, game: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions, Q-values) of the steps game played."""
        steps = self.frames[game] - 1
        return (np.array([a[game] for a in self.actions[:steps]], np.int64),
                np.array([q[game] for q in self.q_values[:steps]]))


def chosen_model(run: Path, model_index: int | None) -> tuple[Path, int]:
    """(model file, the number of the evaluation it played): model_NNN.pt for --model NNN;
    without it final_model.pt, the weights of the run's last evaluation (numbered by
    rewards.txt's last line), else the newest model_NNN.pt."""
    if model_index is not None:
        file = run / f"model_{model_index:03d}.pt"
        if not file.is_file() and (run / FINAL_MODEL).is_file():  # a committed run's only model
            raise InspectError(f"{file}: no such file; without --model, {FINAL_MODEL} plays "
                               f"the run's last evaluation")
        return file, model_index
    file = model_file(run)  # PolicyLoadError: no final_model.pt or model_NNN.pt
    if file.name != FINAL_MODEL:
        return file, int(MODEL_NAME.match(file.name).group(1))
    if not (run / REWARDS).is_file():
        raise InspectError(f"{run}: no {REWARDS} to say which evaluation {FINAL_MODEL} "
                           f"played; give --model N")
    rows = read_rewards(run / REWARDS)
    if not rows:
        raise InspectError(f"{run / REWARDS}: no evaluation; give --model N")
    return file, rows[-1][0]


def action_report(run: Path, model_index: int | None, games: int) -> list[str]:
    if not run.is_dir():
        raise InspectError(f"{run}: no such run folder")
    settings = read_settings(run)
    if settings is None:
        raise InspectError(f"{run}: no config.json (the run's game, seed and epsilon)")
    config = Config(**settings)
    file, index = chosen_model(run, model_index)
    network = load(file)
    env = EvalEnvs(config.env_id, games, max_steps=config.eval_max_steps,
                   protocol=PROTOCOLS[config.protocol])
    try:
        if network.n_actions != env.action_count:
            raise InspectError(f"{file}: {network.n_actions} actions, but {config.env_id} has "
                               f"{env.action_count}")
        recorder = _Recorder(network)
        scores = evaluate(recorder, env, epsilon=config.eval_eps,
                          seeds=evaluation_seeds(config.seed, index), frames=recorder)
        names = env.envs[0].unwrapped.get_action_meanings()
    finally:
        env.close()
    lines = [f"{run.name} {file.name} (evaluation {index}), epsilon {config.eval_eps}; "
             f"actions {', '.join(names)}"]
    for game, score in enumerate(scores):
        actions, q_values = recorder.game(game)
        counts = np.bincount(actions, minlength=len(names))
        mean_q = np.mean(q_values, axis=0)
        lines.append(f"game {game + 1}: {len(actions)} steps, score {score:.0f}, action counts "
                     f"{counts.tolist()}, mean Q [{', '.join(f'{q:.3f}' for q in mean_q)}]")
    return lines


def weight_report(snapshot: Path, betas: list[float], batch_size: int) -> list[str]:
    """snapshot: a replay-*.bin of a prioritized run, or a run folder (its latest one)."""
    file = snapshot_path(snapshot)  # DatasetError: a missing path, a folder without snapshots
    memory = load_snapshot(file)  # ValueError: not a snapshot
    if not isinstance(memory, PrioritizedReplayMemory):
        raise InspectError(f"{file}: a uniform replay memory: it has no priorities or importance "
                           f"weights (a --prioritized run saves those)")
    oldest = memory.appended - len(memory)
    ids = (np.random.default_rng(0).integers(oldest, memory.appended, size=20_000)
           if len(memory) else np.zeros(0, np.int64))
    priorities = np.array([memory.priority(int(i)) for i in ids])
    priorities = priorities[priorities > 0]  # 0.0: not sampleable yet (its n steps not taken)
    if not len(priorities):
        raise InspectError(f"{file}: {len(memory)} transitions, none of them sampleable yet")
    lines = [f"{file.name}: {len(memory)} transitions, alpha {memory.alpha}, eps {memory.eps}, "
             f"largest p {memory.max_priority:.4g}",
             "p^alpha quantiles " + ", ".join(
                 f"{q:.0%}: {v:.4g}"
                 for q, v in zip(QUANTILES, np.quantile(priorities, QUANTILES)))]
    for beta in betas:
        weights = memory.sample(batch_size, beta).weights
        lines.append(f"beta {beta}: batch weights min {weights.min():.4g}, median "
                     f"{np.median(weights):.4g}, max {weights.max():.4g}")
    return lines


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _beta(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atari_dqn.inspect_run",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    actions = sub.add_parser("actions", help="play games with a saved model")
    actions.add_argument("run", type=Path, help="a run folder (with its config.json)")
    actions.add_argument("--model", type=_positive, default=None, metavar="N",
                         help="evaluation number N: play its games with model_NNN.pt (default: "
                              "final_model.pt, with the run's last evaluation's games; without "
                              "one, the newest model_NNN.pt)")
    actions.add_argument("--games", type=_positive, default=2,
                         help="games to play (default: %(default)s)")
    weights = sub.add_parser("weights", help="priorities and weights of a replay snapshot")
    weights.add_argument("snapshot", type=Path,
                         help="a prioritized run's replay-*.bin, or its run folder (its latest "
                              "replay-*.bin)")
    weights.add_argument("--beta", type=_beta, nargs="+", default=[0.4, 0.7, 1.0],
                         help="importance-sampling exponents to sample batches with (default: "
                              "%(default)s)")
    weights.add_argument("--batch-size", type=_positive, default=32,
                         help="transitions per sampled batch (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        lines = (action_report(args.run, args.model, args.games) if args.what == "actions"
                 else weight_report(args.snapshot, args.beta, args.batch_size))
    except (InspectError, RunFileError, PolicyLoadError, DatasetError, OSError, ValueError) as e:
        # ValueError also: a file that is no replay snapshot (the message names it)
        print(f"inspect_run: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main)
