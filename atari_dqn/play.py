"""Play whole games with a trained agent: python -m atari_dqn.play RUN_OR_MODEL [options].

    python -m atari_dqn.play rewards/breakout-seed0                      # its last model, 10 games
    python -m atari_dqn.play rewards/breakout-seed0/final_model.pt --games 3 --gif best.gif

The games are evaluation games (atari_dqn/evaluate.py, the code that scores a run): whole games,
all lives, epsilon-greedy with --eps, each cut after --max-steps agent steps. The game and the cap
default to the run's (its config.json), else Breakout and 27,000 agent steps. Prints each game's
raw score and their mean. --gif writes the best game as an animated GIF.

Bad input (a missing path, a file that is no model, a model for another game's actions, a bad
value) prints one line, `play: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from atari_dqn import env as envs
from atari_dqn import policy
from atari_dqn.config import ConfigError
from atari_dqn.cli import OneLineParser
from atari_dqn.evaluate import NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds

DEFAULT_GAME = "Breakout"
DEFAULT_MAX_STEPS = 27_000  # agent steps = 108,000 emulator frames = 30 minutes, as --eval-max-steps
PLAY_INDEX = 0  # evaluation_seeds(seed, 0): training's evaluations count from 1


class PlayError(ValueError):
    """Printed as `play: error: ...`; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="play", description="Play whole games with a trained agent and print the scores.")
    parser.add_argument("path", metavar="RUN_OR_MODEL",
                        help="a run folder (its final_model.pt, else its last model_NNN.pt) or a "
                             "model file (*.pt) of a run")
    parser.add_argument("--games", type=int, default=10, help="whole games to play (default 10)")
    parser.add_argument("--eps", type=float, default=0.05,
                        help="epsilon: the chance of a random action per step (default 0.05)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the games' no-ops and the random actions (default 0)")
    parser.add_argument("--gif", default="", help="write the best game to this GIF file")
    parser.add_argument("--env", default="",
                        help="game (default: the run's, from its config.json, else Breakout)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="cap on one game in agent steps (default: the run's "
                             "--eval-max-steps, else 27000)")
    parser.add_argument("--device", default="cpu", help="where the network runs (default cpu)")
    return parser


def run_settings(model: Path) -> dict:
    """The config.json of the model's run folder, or {} when there is none."""
    path = model.parent / "config.json"
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PlayError(f"{path}: unreadable ({e})") from None
    return settings if isinstance(settings, dict) else {}


def play(args: argparse.Namespace) -> list[float]:
    """Load, check, play; returns each game's raw score."""
    if args.games < 1:
        raise PlayError(f"--games must be a positive integer, got {args.games}")
    if not 0.0 <= args.eps <= 1.0:
        raise PlayError(f"--eps must be in [0, 1], got {args.eps}")
    if args.max_steps < 0:
        raise PlayError(f"--max-steps must be a positive integer, got {args.max_steps}")
    gif = Path(args.gif) if args.gif else None
    if gif is not None and not gif.parent.is_dir():
        raise PlayError(f"--gif {gif}: no folder {gif.parent}")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise PlayError(f"--device {args.device}: {e}") from None
    network = policy.load(args.path, device)
    settings = run_settings(policy.model_file(args.path))
    game = args.env or settings.get("env_id", DEFAULT_GAME)
    max_steps = args.max_steps or int(settings.get("eval_max_steps", DEFAULT_MAX_STEPS))
    env = envs.EvalEnvs(game, args.games, max_steps=max_steps, render=gif is not None)
    try:
        if env.action_count != network.n_actions:
            raise PlayError(f"the model has {network.n_actions} actions, {game} has "
                            f"{env.action_count}")
        with tempfile.TemporaryDirectory(prefix="play-frames-") as frames_dir:
            frames = (PngFrameWriter(Path(frames_dir) / "frames", gif) if gif is not None
                      else NullFrameWriter())
            return evaluate(policy.Actor(network), env, epsilon=args.eps,
                            seeds=evaluation_seeds(args.seed, PLAY_INDEX), frames=frames)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on an unknown option
    try:
        scores = play(args)
    except (PlayError, policy.PolicyLoadError, ConfigError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the GIF cannot be written
        print(f"{parser.prog}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    for game, score in enumerate(scores, start=1):
        print(f"game {game}: score {score:.1f}")
    print(f"mean score {np.mean(scores):.1f} over {len(scores)} games")
    return 0


if __name__ == "__main__":
    sys.exit(main())
