"""Play whole games with a trained agent: python -m atari_dqn.play RUN_OR_MODEL [options].

    python -m atari_dqn.play rewards/breakout-seed0                      # its last model, 10 games
    python -m atari_dqn.play rewards/breakout-seed0/final_model.pt --games 3 --gif best.gif

The games are evaluation games (atari_dqn/run/evaluate.py, the code that scores a run): whole games,
all lives, epsilon-greedy with --eps, each cut after --max-steps agent steps, played under
--protocol (docs/protocols.md). The game, the cap and the protocol default to the run's (its
config.json; a run from before --protocol: deepmind), else Breakout, 27,000 agent steps and
deepmind. Prints each game's raw score as the game ends (the games play side by side, so not
always in their order), then their mean. --gif writes the best game as an animated GIF; a file
already there is replaced only with --force.

Bad input (a missing path, a file that is no model, a model for another game's actions, a bad
value, a --gif that cannot be written) prints one line, `play: error: ...`, and exits with status
2. Everything is checked before the first game: a mistake costs no minutes of play.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from atari_dqn import policy
from atari_dqn.cli import OneLineParser, run_tool
from atari_dqn.config import (FRAME_SKIP, MAX_EPISODE_FRAMES, MAX_SEED, PREDATED,
                              PROTOCOL_NAMES, ConfigError, RunError)
from atari_dqn.envs import atari as envs
from atari_dqn.run.evaluate import (NullFrameWriter, PngFrameWriter, evaluate, evaluation_seeds,
                                    ignore_game_end)

DEFAULT_GAME = "Breakout"
DEFAULT_MAX_STEPS = 27_000  # agent steps = 108,000 emulator frames = 30 minutes, as --eval-max-steps
MAX_STEPS = MAX_EPISODE_FRAMES // FRAME_SKIP  # ALE keeps a game's frame cap in a C int
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
    parser.add_argument("--force", action="store_true",
                        help="replace the --gif file if it exists (default: refuse)")
    parser.add_argument("--env", default="",
                        help="game (default: the run's, from its config.json, else Breakout)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="cap on one game in agent steps (default: the run's "
                             "--eval-max-steps, else 27000)")
    parser.add_argument("--protocol", default="", choices=("", *PROTOCOL_NAMES),
                        metavar="{" + ",".join(PROTOCOL_NAMES) + "}",
                        help="how the games are played (default: the run's --protocol, else "
                             "deepmind)")
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


def checked_device(name: str) -> torch.device:
    """The --device to play on; PlayError unless it is the CPU or a CUDA device this machine
    has (torch knows more kinds, e.g. meta, that hold no weights to play with)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PlayError(f"--device {name}: not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlayError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PlayError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                            f"CUDA device(s)")
    elif device.type != "cpu":
        raise PlayError(f"--device {name}: must be cpu, cuda or cuda:N")
    return device


def checked_gif(name: str, force: bool) -> Path | None:
    """The --gif file, None without one; PlayError unless it can be written: a file (not a
    folder) in a folder this process can create files in, not there yet unless force."""
    if not name:
        return None
    gif = Path(name)
    if gif.is_dir():
        raise PlayError(f"--gif {gif}: is a folder; name a .gif file")
    if os.path.lexists(gif):
        if not force:
            raise PlayError(f"--gif {gif}: already exists; --force replaces it")
        if gif.exists() and not gif.is_file():
            raise PlayError(f"--gif {gif}: not a regular file")
    folder = gif.parent
    if not folder.is_dir():
        raise PlayError(f"--gif {gif}: no folder {folder}")
    # The GIF is written as atomic_write does it, a temporary file in its folder that then
    # replaces it: try that now (leaving nothing) rather than after the games are played.
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{gif.name}.tmp.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PlayError(f"--gif {gif}: cannot write in {folder} "
                        f"({os.strerror(e.errno) if e.errno else e})") from None
    return gif


def game_and_cap(args: argparse.Namespace, settings: dict, source: Path) -> tuple[str, int]:
    """The game and the cap on one game in agent steps: the flags', else the run's settings
    (checked: a config.json may be edited by hand), else the defaults."""
    game = args.env or settings.get("env_id", DEFAULT_GAME)
    if not args.env:  # an unknown --env is EvalEnvs' ConfigError, which names the flag
        try:
            known = isinstance(game, str) and bool(envs.resolve_env_id(game))
        except ConfigError:
            known = False
        if not known:
            raise PlayError(f"{source}: env_id must be an Atari game's name, got {game!r}")
    max_steps = args.max_steps or settings.get("eval_max_steps", DEFAULT_MAX_STEPS)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or \
            not 1 <= max_steps <= MAX_STEPS:
        raise PlayError(f"{source}: eval_max_steps must be an integer in [1, {MAX_STEPS}], "
                        f"got {max_steps!r}")
    return game, max_steps


def protocol_of(args: argparse.Namespace, settings: dict, source: Path) -> envs.Protocol:
    """The protocol the games are played under: --protocol, else the run's (checked; a run from
    before the setting played deepmind), else deepmind."""
    name = args.protocol or settings.get("protocol", PREDATED["protocol"])
    if not isinstance(name, str) or name not in envs.PROTOCOLS:
        raise PlayError(f"{source}: protocol must be one of {', '.join(envs.PROTOCOLS)}, "
                        f"got {name!r}")
    return envs.PROTOCOLS[name]


def play(args: argparse.Namespace,
         on_game_end: Callable[[int, float], None] = ignore_game_end) -> list[float]:
    """Check, load, play; returns each game's raw score. on_game_end(game, score) is called as
    each game ends (game counts from 0). Every check is made before the first game."""
    if args.games < 1:
        raise PlayError(f"--games must be a positive integer, got {args.games}")
    if not 0.0 <= args.eps <= 1.0:
        raise PlayError(f"--eps must be in [0, 1], got {args.eps}")
    if not 0 <= args.seed <= MAX_SEED:
        raise PlayError(f"--seed must be in [0, 2**{MAX_SEED.bit_length() - 1}], "
                        f"got {args.seed}")
    if not 0 <= args.max_steps <= MAX_STEPS:  # 0: the run's
        raise PlayError(f"--max-steps must be a positive integer of at most {MAX_STEPS} "
                        f"(ALE's cap on a game), got {args.max_steps}")
    device = checked_device(args.device)
    gif = checked_gif(args.gif, args.force)
    model = policy.model_file(args.path)
    settings, source = run_settings(model), model.parent / "config.json"
    game, max_steps = game_and_cap(args, settings, source)
    protocol = protocol_of(args, settings, source)
    network = policy.load(model, device)
    env = envs.EvalEnvs(game, args.games, max_steps=max_steps, render=gif is not None,
                        protocol=protocol)
    try:
        if env.action_count != network.n_actions:
            raise PlayError(f"the model has {network.n_actions} actions, {game} has "
                            f"{env.action_count}")
        with tempfile.TemporaryDirectory(prefix="play-frames-") as frames_dir:
            frames = (PngFrameWriter(Path(frames_dir) / "frames", gif) if gif is not None
                      else NullFrameWriter())
            return evaluate(policy.Actor(network), env, epsilon=args.eps,
                            seeds=evaluation_seeds(args.seed, PLAY_INDEX), frames=frames,
                            on_game_end=on_game_end)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on an unknown option
    def report(game: int, score: float) -> None:  # as it ends: a game can take minutes
        print(f"game {game + 1}: score {score:.1f}", flush=True)

    try:
        scores = play(args, on_game_end=report)
    except (PlayError, policy.PolicyLoadError, ConfigError, RunError) as e:
        # RunError: a DiskError, e.g. the disk filled up while the GIF was written
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{parser.prog}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    print(f"mean score {np.mean(scores):.1f} over {len(scores)} games")
    return 0


if __name__ == "__main__":
    run_tool(main)
