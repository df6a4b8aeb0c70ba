"""Look inside a run: what a saved policy does, and what its prioritized memory samples.

    python -m atari_dqn.inspect_run actions <run> --model 3
        plays games of evaluation 3 (its seeds, its epsilon) with model_003.pt and prints, per
        game, its length, score, how often each action was taken and the mean Q-value of each
        action. A degenerate greedy policy (one action nearly always) shows at a glance.
    python -m atari_dqn.inspect_run weights <run>/replay-000200000.bin
        quantiles of the priorities (p^alpha) in a prioritized replay snapshot, and the
        importance weights of sampled batches as the memory returns them (Agent.learn rescales
        them per batch)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from atari_dqn.agent import Agent
from atari_dqn.config import Config, saved_settings
from atari_dqn.env import EvalEnvs
from atari_dqn.evaluate import NullFrameWriter, evaluate, evaluation_seeds
from atari_dqn.replay import PrioritizedReplayMemory

QUANTILES = (0.0, 0.01, 0.1, 0.5, 0.9, 1.0)


class _Recorder(NullFrameWriter):
    """Stands in for evaluate()'s agent and frame writer: acts as the agent does and records
    each step's actions and Q-values (one row per game), and how many frames each game had
    (its reset, then one a step while it played), so that game i's record is the first
    frames[i] - 1 steps of its row."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.actions: list[np.ndarray] = []   # per step: (games,)
        self.q_values: list[np.ndarray] = []  # per step: (games, actions)
        self.frames: dict[int, int] = {}

    def capture(self, game: int, games: EvalEnvs) -> None:
        self.frames[game] = self.frames.get(game, 0) + 1

    def act_batch(self, states: np.ndarray, epsilon: float,
                  rng: np.random.Generator) -> np.ndarray:
        with torch.inference_mode():
            self.q_values.append(self.agent.online(torch.from_numpy(states)).numpy())
        actions = self.agent.act_batch(states, epsilon, rng)
        self.actions.append(actions)
        return actions

    def game(self, game: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions, Q-values) of the steps game played."""
        steps = self.frames[game] - 1
        return (np.array([a[game] for a in self.actions[:steps]], np.int64),
                np.array([q[game] for q in self.q_values[:steps]]))


def action_report(run: Path, model_index: int, games: int) -> list[str]:
    saved = json.loads((run / "config.json").read_text())
    config = Config(**{**saved_settings(saved), "compile": False})
    env = EvalEnvs(config.env_id, games, max_steps=config.eval_max_steps)
    agent = Agent(env.action_count, config, torch.device("cpu"))
    agent.online.load_state_dict(torch.load(run / f"model_{model_index:03d}.pt",
                                            map_location="cpu", weights_only=True))
    recorder = _Recorder(agent)
    scores = evaluate(recorder, env, epsilon=config.eval_eps,
                      seeds=evaluation_seeds(config.seed, model_index), frames=recorder)
    names = env.envs[0].unwrapped.get_action_meanings()
    env.close()
    lines = [f"{run.name} model_{model_index:03d}.pt, epsilon {config.eval_eps}; "
             f"actions {', '.join(names)}"]
    for game, score in enumerate(scores):
        actions, q_values = recorder.game(game)
        counts = np.bincount(actions, minlength=len(names))
        mean_q = np.mean(q_values, axis=0)
        lines.append(f"game {game + 1}: {len(actions)} steps, score {score:.0f}, action counts "
                     f"{counts.tolist()}, mean Q [{', '.join(f'{q:.3f}' for q in mean_q)}]")
    return lines


def weight_report(snapshot: Path, betas: list[float], batch_size: int) -> list[str]:
    memory = PrioritizedReplayMemory.load(snapshot)
    oldest = memory.appended - len(memory)
    ids = np.random.default_rng(0).integers(oldest, memory.appended, size=20_000)
    priorities = np.array([memory.priority(int(i)) for i in ids])
    priorities = priorities[priorities > 0]  # 0.0: not sampleable yet (its n steps not taken)
    lines = [f"{snapshot.name}: {len(memory)} transitions, alpha {memory.alpha}, eps {memory.eps}, "
             f"largest p {memory.max_priority:.4g}",
             "p^alpha quantiles " + ", ".join(
                 f"{q:.0%}: {v:.4g}"
                 for q, v in zip(QUANTILES, np.quantile(priorities, QUANTILES)))]
    for beta in betas:
        weights = memory.sample(batch_size, beta).weights
        lines.append(f"beta {beta}: batch weights min {weights.min():.4g}, median "
                     f"{np.median(weights):.4g}, max {weights.max():.4g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    actions = sub.add_parser("actions", help="play games with a saved model")
    actions.add_argument("run", type=Path)
    actions.add_argument("--model", type=int, required=True, help="evaluation number NNN")
    actions.add_argument("--games", type=int, default=2)
    weights = sub.add_parser("weights", help="priorities and weights of a replay snapshot")
    weights.add_argument("snapshot", type=Path)
    weights.add_argument("--beta", type=float, nargs="+", default=[0.4, 0.7, 1.0])
    weights.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        lines = (action_report(args.run, args.model, args.games) if args.what == "actions"
                 else weight_report(args.snapshot, args.beta, args.batch_size))
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"inspect_run: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
