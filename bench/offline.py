"""Offline training's update rate against the online learner's, on the same machine and network.

    PYTHONPATH=. python bench/offline.py [--updates 200] [--repeats 3] [--transitions 20000] [--no-compile]

Workload: a dataset of --transitions synthetic Breakout-shaped transitions (random frames,
n-step 3, the project's default network and head: today the Nature CNN with a QR-DQN head,
dueling, Double DQN), batch 32.

  learner            the online learner's own update rate: updates.Updates.start() (sample on the
                     loop's thread, then Agent.learn) called back to back, no env: what the
                     online loop's updates cost when acting is taken away
  offline            atari_dqn.modes.offline.train_offline() itself (reseeded sampling in turn,
                     telemetry), timed between update WARM_UPDATES and WARM_UPDATES + --updates
                     through its stop_when hook; no evaluation falls in the window
  offline, ahead     the same with the sample-ahead thread on (offline.SAMPLE_AHEAD = True)

Every row builds a fresh Agent (compiled unless --no-compile; the first WARM_UPDATES updates,
untimed, include the compilation); the rows alternate --repeats times; the table gives the
median updates/s and the range, and offline's median as a share of the learner's.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atari_dqn.config import Config
from atari_dqn.learn.agent import Agent
from atari_dqn.modes import offline
from atari_dqn.replay import ReplayMemory
from atari_dqn.run.updates import Updates

WARM_UPDATES = 30
BATCH = 32
BREAKOUT_ACTIONS = 4


def make_dataset(path: Path, transitions: int, n_step: int) -> None:
    rng = np.random.default_rng(0)
    memory = ReplayMemory(transitions, n_step=n_step, gamma=0.99, seed=0)
    frames = rng.integers(0, 256, (64, 84, 84), dtype=np.uint8)  # reused: content does not matter
    memory.start_episode(frames[0])
    for t in range(transitions):
        over = t % 500 == 499
        memory.append(int(rng.integers(BREAKOUT_ACTIONS)), float(t % 7 == 0), frames[t % 64], over)
        if over:
            memory.start_episode(frames[(t + 1) % 64])
    memory.save(path)


def learner_rate(config: Config, memory: ReplayMemory, updates: int) -> float:
    torch.manual_seed(config.seed)
    agent = Agent(BREAKOUT_ACTIONS, config, torch.device("cpu"))
    schedule = Updates(agent, memory, config, on_stats=lambda stats: None)
    for step in range(WARM_UPDATES):
        schedule.start(step)
    started = time.perf_counter()
    for step in range(updates):
        schedule.start(WARM_UPDATES + step)
    seconds = time.perf_counter() - started
    return updates / seconds


def offline_rate(config: Config, updates: int, out: Path, ahead: bool) -> float:
    offline.SAMPLE_AHEAD = ahead
    marks: dict[int, float] = {}

    def stop_when(update: int) -> bool:
        if update in (WARM_UPDATES, WARM_UPDATES + updates):
            marks[update] = time.perf_counter()
        return update == WARM_UPDATES + updates

    total = WARM_UPDATES + updates + 1
    run_config = dataclasses.replace(config, out_dir=str(out), total_updates=total,
                                     eval_every_steps=total)
    try:
        offline.train_offline(run_config, {}, stop_when=stop_when)
    finally:
        offline.SAMPLE_AHEAD = False
    return updates / (marks[WARM_UPDATES + updates] - marks[WARM_UPDATES])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200, help="timed updates per row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.bin"
        make_dataset(data, args.transitions, n_step=3)
        memory = ReplayMemory.load(data)
        config = Config(offline=str(data), batch_size=BATCH, threads=args.threads,
                        compile=args.compile, eval_episodes=1, eval_max_steps=10)
        torch.set_num_threads(args.threads)
        rates: dict[str, list[float]] = {"learner": [], "offline": [], "offline, ahead": []}
        for repeat in range(args.repeats):
            rates["learner"].append(learner_rate(config, memory, args.updates))
            rates["offline"].append(offline_rate(config, args.updates,
                                                 Path(tmp) / f"a{repeat}", ahead=False))
            rates["offline, ahead"].append(offline_rate(config, args.updates,
                                                        Path(tmp) / f"b{repeat}", ahead=True))
    learner = statistics.median(rates["learner"])
    head = f"{config.head} head"
    if config.head == "quantile":
        head += f" ({config.n_quantiles} quantiles)"
    print(f"batch {BATCH}, {config.network} network, {head}, dueling {config.dueling}, "
          f"double {config.double}, 3-step, {args.threads} threads, "
          f"{'compiled' if args.compile else 'eager'}, {args.updates} timed updates x "
          f"{args.repeats} repeats")
    print(f"{'row':<20} {'updates/s (median)':>18} {'range':>16} {'of learner':>11}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<20} {median:>18.1f} {min(values):>7.1f}-{max(values):<8.1f} "
              f"{median / learner:>10.0%}")


if __name__ == "__main__":
    main()
