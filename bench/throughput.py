"""Training throughput: agent steps per second of the real training loop against a plain serial
DQN loop built from the same parts with the same hyperparameters, measured in the same run.

Workload (both loops): Breakout, batch 32, one update per 4 agent steps, a 100k-transition memory,
target sync every 1,000 agent steps, no evaluation. --learning-starts agent steps of random play
fill the memory first, then WARM_STEPS agent steps with learning on (both untimed: they include
torch.compile's compilation); then --timed-steps agent steps with learning on are timed.
Epsilon is 0.01 once learning starts, so nearly every step runs the network to act (as in most of
a real run, where epsilon sits at its end value).

  plain    the usual single-file loop: act -> step -> store -> learn strictly in turn, with
           torch's defaults (default Adam, NCHW tensors, eager networks, default threads). Built
           from env.py, replay.py, schedule.py and agent.Agent.learn (the very same TD target),
           with the optimizer and layout put back to torch's defaults.
  trainer  atari_dqn.train.train() with its defaults (evaluation pushed past the timed window)

The trainer is also measured with --no-compile. --levers adds rows that take the levers one at a
time: the plain loop with fused Adam, then also channels_last; the trainer with --overlap, and
with --threads 1. Every measurement runs in a fresh process; the rows alternate, --repeats times,
and the table gives medians and ranges.

    python bench/throughput.py                       # uniform and prioritized (about 8 minutes)
    python bench/throughput.py --prioritized --levers
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atari_dqn import env as envs
from atari_dqn.agent import Agent
from atari_dqn.config import Config
from atari_dqn.schedule import beta, epsilon
from atari_dqn.train import make_memory, train

EPS_LEARNING = 0.01
WARM_STEPS = 100  # agent steps of learning before the clock starts: 25 updates, compiled by then
ROWS = {  # name -> what the row measures
    "plain": "plain serial loop, torch defaults",
    "plain+fused": "plain loop + fused Adam",
    "plain+fused+cl": "plain loop + fused Adam + channels_last",
    "trainer --overlap": "train(), learner thread beside the actor",
    "trainer --threads 1": "train(), 1 torch thread",
    "trainer --no-compile": "train(), eager networks",
    "trainer": "train() with its defaults",
}
LEVER_ROWS = ("plain+fused", "plain+fused+cl", "trainer --overlap", "trainer --threads 1")


def bench_config(args: argparse.Namespace, prioritized: bool, out_dir: str, **extra) -> Config:
    total = args.learning_starts + WARM_STEPS + args.timed_steps
    # Plain DQN targets (no double, dueling or n-step): the settings the table was measured with.
    return Config(env_id="Breakout", batch_size=32, train_every_steps=4, double=False,
                  dueling=False, n_step=1,
                  memory_capacity_transitions=100_000, target_update_steps=1_000,
                  learning_starts_steps=args.learning_starts, total_steps=total + 1,
                  eps_start=EPS_LEARNING, eps_end=EPS_LEARNING, prioritized=prioritized,
                  eval_every_steps=total + 1, eval_episodes=1, eval_max_steps=1,
                  out_dir=out_dir, seed=args.seed, **extra)


def run_plain(config: Config, *, fused: bool, channels_last: bool) -> float:
    """Agent steps per second of the timed window of a strictly serial loop."""
    torch.manual_seed(config.seed)
    env = envs.make_train_env(config.env_id)
    agent = Agent(int(env.action_space.n), config, torch.device("cpu"))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    agent.online.to(memory_format=layout)
    agent.target.to(memory_format=layout)
    agent.optimizer = torch.optim.Adam(agent.online.parameters(), lr=config.lr,
                                       eps=config.adam_eps, **({"fused": True} if fused else {}))
    memory = make_memory(config)
    rng = np.random.default_rng(config.seed)
    obs, _ = env.reset(seed=config.seed)
    memory.start_episode(obs)
    start_time = None
    for step in range(1, config.total_steps):  # the trainer stops before its last step too
        if step == config.learning_starts_steps + WARM_STEPS + 1:
            start_time = time.perf_counter()
        eps = epsilon(step - 1, start=config.eps_start, end=config.eps_end,
                      decay_steps=config.eps_decay_steps,
                      warmup_steps=config.learning_starts_steps)
        action = agent.act(memory.state(), eps, rng)
        obs, reward, terminated, truncated, _ = env.step(action)
        memory.append(action, envs.learning_reward(reward), obs, terminated, truncated)
        if terminated or truncated:
            obs, _ = env.reset()
            memory.start_episode(obs)
        if step > config.learning_starts_steps and step % config.train_every_steps == 0:
            if config.prioritized:
                batch = memory.sample(config.batch_size, beta(
                    step, start=config.per_beta_start, total_steps=config.total_steps))
                memory.update_priorities(batch.ids, agent.learn(batch, batch.weights).td_errors)
            else:
                agent.learn(memory.sample(config.batch_size))
        if step % config.target_update_steps == 0:
            agent.sync_target()
    env.close()
    return (config.total_steps - 1 - config.learning_starts_steps - WARM_STEPS) / (
        time.perf_counter() - start_time)


def run_trainer(config: Config) -> float:
    """Agent steps per second of train() between learning_starts + WARM_STEPS and the last step
    before its final evaluation."""
    marks: dict[int, float] = {}
    first, last = config.learning_starts_steps + WARM_STEPS, config.total_steps - 1

    def clock(step: int) -> bool:
        if step in (first, last):
            marks[step] = time.perf_counter()
        return step == last

    train(config, stop_when=clock)
    return (last - first) / (marks[last] - marks[first])


def measure(row: str, prioritized: bool, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        if row.startswith("plain"):
            config = bench_config(args, prioritized, out, overlap=False, compile=False)
            return run_plain(config, fused="fused" in row, channels_last="cl" in row)
        extra: dict = {}
        if "--overlap" in row:
            extra["overlap"] = True
        if "--no-compile" in row:
            extra["compile"] = False
        if "threads 1" in row:
            extra["threads"] = 1
        return run_trainer(bench_config(args, prioritized, out, **extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prioritized", action="store_true", help="prioritized replay only")
    parser.add_argument("--uniform", action="store_true", help="uniform replay only")
    parser.add_argument("--levers", action="store_true", help="add one row per lever")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--timed-steps", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.worker:
        row, prioritized = json.loads(args.worker)
        print(json.dumps(measure(row, prioritized, args)))
        return

    modes = [False, True]
    if args.prioritized != args.uniform:
        modes = [args.prioritized]
    rows = ["plain", *(LEVER_ROWS if args.levers else ()), "trainer --no-compile", "trainer"]
    results: dict[tuple[str, bool], list[float]] = {}
    for repeat in range(args.repeats):
        for prioritized in modes:
            for row in rows:  # alternate, so slow spells of the machine hit every row
                cmd = [sys.executable, __file__, "--worker", json.dumps([row, prioritized]),
                       "--learning-starts", str(args.learning_starts),
                       "--timed-steps", str(args.timed_steps), "--seed", str(args.seed)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rate = float(done.stdout.strip().splitlines()[-1])
                results.setdefault((row, prioritized), []).append(rate)
                print(f"  repeat {repeat + 1}: {'per' if prioritized else 'uniform'} {row}: "
                      f"{rate:.1f} steps/s", file=sys.stderr, flush=True)

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} default threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.timed_steps} timed agent steps "
          f"after {args.learning_starts} of random play; median of {args.repeats} [range]\n")
    print("| replay | loop | agent steps/s | vs plain |")
    print("|---|---|---|---|")
    for prioritized in modes:
        plain = statistics.median(results[("plain", prioritized)])
        for row in rows:
            rates = results[(row, prioritized)]
            median = statistics.median(rates)
            print(f"| {'prioritized' if prioritized else 'uniform'} | {row}: {ROWS[row]} | "
                  f"{median:.1f} [{min(rates):.1f}-{max(rates):.1f}] | {median / plain:.2f}x |")
    if len(modes) == 2:
        uniform, per = (statistics.median(results[("trainer", p)]) for p in modes)
        print(f"\ntrainer, prioritized vs uniform: {per / uniform - 1:+.1%}")


if __name__ == "__main__":
    main()
