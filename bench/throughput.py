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
           from envs/atari.py, replay.py, learn/schedule.py and learn/agent.Agent.learn (the very
           same TD target), with the optimizer and layout put back to torch's defaults.
  plain-sb3  the same loop in the shape of CleanRL's dqn_atari.py: the game's frames stacked by
           gymnasium's FrameStackObservation, stored in Stable-Baselines3's ReplayBuffer
           (optimize_memory_usage=True, as CleanRL has it), sampled as torch tensors; the same
           network, optimizer and TD target (Agent.learn). Needs `pip install -e .[bench]`.
  trainer  atari_dqn.modes.one_process.train() with its defaults (evaluation pushed past the
           timed window)
  trainer --envs N   train() acting on N games at once (one batched forward an iteration), at
           the same replay ratio (one update of 32 per 4 agent steps, over all games); N from
           --envs (default 1 2 4 8), the games stepped in --env-processes child processes
  trainer defaults --envs N   the same with the project's learning defaults (Double DQN,
           dueling, 3-step returns, QR head) instead of the plain settings, at N = 1 and the
           largest N
  ... --precision bf16   the largest N's two rows again with the updates' network passes in
           bfloat16 (--precision bf16: autocast; weights, gradients and Adam stay float32)

The plain settings are the issue's comparison settings: --no-double --no-dueling --n-step 1
--head scalar.
The trainer is also measured with --no-compile. --levers adds rows that take the levers one at a
time: the plain loop with fused Adam, then also channels_last; the trainer with --threads 1.
(--overlap, a learner thread beside the acting loop, was measured here too until it was removed:
docs/throughput.md.) Every measurement runs in a fresh process; the rows alternate, --repeats
times, and the table gives medians and ranges.

    python bench/throughput.py                       # uniform and prioritized (about 8 minutes)
    python bench/throughput.py --prioritized --levers
    python bench/throughput.py --uniform --envs 1 2 4 8 --repeats 3   # the issue's table

After the table, --breakdown (on by default) adds one instrumented run per --envs N (not
repeated; its perf_counter calls cost a little): where the time of an agent step goes, timed
around each phase of train() over the same window: env (TrainEnvs.step, incl. waiting for child
processes), act (Agent.act_batch), replay (append_batch, states, sample), learn (Agent.learn),
other (the rest: the loop, schedules, syncs, telemetry).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atari_dqn.config import Config
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent
from atari_dqn.learn.schedule import beta, epsilon
from atari_dqn.modes.memory import make_memory
from atari_dqn.modes.one_process import train

EPS_LEARNING = 0.01
WARM_STEPS = 104  # agent steps of learning before the clock starts: 26 updates, compiled by then
ALIGN = 8  # window edges are multiples of every --envs measured (1, 2, 4, 8): iteration ends
PHASES = ("env", "act", "replay", "learn")
# The comparison settings (plain one-step DQN, scalar head), and the project's defaults
# of the same settings (what the "defaults" rows put back)
PLAIN = dict(double=False, dueling=False, n_step=1, head="scalar")
DEFAULTS = {name: Config.__dataclass_fields__[name].default for name in PLAIN}
ROWS = {  # name -> what the row measures
    "plain": "plain serial loop, torch defaults",
    "plain-sb3": "plain serial loop, torch defaults, SB3's ReplayBuffer (CleanRL's shape)",
    "plain+fused": "plain loop + fused Adam",
    "plain+fused+cl": "plain loop + fused Adam + channels_last",
    "trainer --threads 1": "train(), 1 torch thread",
    "trainer --no-compile": "train(), eager networks",
    "trainer": "train() with its defaults",
}
ENVS_ROW = re.compile(r"^trainer(?P<defaults> defaults)? --envs (?P<n>\d+)"
                      r"(?P<bf16> --precision bf16)?$")
LEVER_ROWS = ("plain+fused", "plain+fused+cl", "trainer --threads 1")


def row_name(row: str) -> str:
    match = ENVS_ROW.match(row)
    if match is None:
        return ROWS[row]
    learning = "the defaults (QR head, Double, dueling, 3-step)" if match["defaults"] \
        else "plain settings"
    games = f"{match['n']} game{'s' if match['n'] != '1' else ''}"
    bf16 = ", updates in bfloat16 (autocast)" if match["bf16"] else ""
    return f"train(), {games} at once, {learning}{bf16}"


def align(steps: int) -> int:
    return -(-steps // ALIGN) * ALIGN


def window(args: argparse.Namespace) -> tuple[int, int]:
    """(first, last): the timed agent steps are first + 1 .. last, both ends multiples of ALIGN."""
    first = align(args.learning_starts + WARM_STEPS)
    return first, first + align(args.timed_steps)


def bench_config(args: argparse.Namespace, prioritized: bool, out_dir: str, envs: int = 1,
                 **extra) -> Config:
    _, last = window(args)
    # Plain DQN targets (no double, dueling or n-step): the comparison settings,
    # --no-double --no-dueling --n-step 1 (extra may put the project's defaults back).
    settings = {**PLAIN, **extra}
    workload = dict(env_id="Breakout", batch_size=32, train_every_steps=4,
                    memory_capacity_transitions=100_000, target_update_steps=1_000,
                    learning_starts_steps=args.learning_starts, total_steps=last + envs,
                    eps_start=EPS_LEARNING, eps_end=EPS_LEARNING, prioritized=prioritized,
                    eval_every_steps=last + envs, eval_episodes=1, eval_max_steps=1,
                    out_dir=out_dir, seed=args.seed, envs=envs)
    return Config(**{**workload, **settings})  # extra may change the workload (--train-every)


def run_plain(config: Config, *, fused: bool, channels_last: bool) -> float:
    """Agent steps per second of the timed window of a strictly serial loop."""
    torch.manual_seed(config.seed)
    env = envs.make_train_env(config.env_id, envs.PROTOCOLS[config.protocol])
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
    first, last = align(config.learning_starts_steps + WARM_STEPS), config.total_steps - config.envs
    for step in range(1, last + 1):  # the trainer stops before its last evaluation too
        if step == first + 1:
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
    return (last - first) / (time.perf_counter() - start_time)


def run_plain_sb3(config: Config) -> float:
    """Agent steps per second of the timed window of CleanRL's dqn_atari.py loop: stacked
    observations from FrameStackObservation, SB3's ReplayBuffer, Agent.learn on its samples."""
    from types import SimpleNamespace

    from gymnasium.wrappers import FrameStackObservation
    from stable_baselines3.common.buffers import ReplayBuffer

    torch.manual_seed(config.seed)
    env = FrameStackObservation(envs.make_train_env(config.env_id, envs.PROTOCOLS[config.protocol]), envs.STACK)
    agent = Agent(int(env.action_space.n), config, torch.device("cpu"))
    agent.optimizer = torch.optim.Adam(agent.online.parameters(), lr=config.lr,
                                       eps=config.adam_eps)
    buffer = ReplayBuffer(config.memory_capacity_transitions, env.observation_space,
                          env.action_space, device="cpu", optimize_memory_usage=True,
                          handle_timeout_termination=False)
    rng = np.random.default_rng(config.seed)
    obs, _ = env.reset(seed=config.seed)
    start_time = None
    first, last = align(config.learning_starts_steps + WARM_STEPS), config.total_steps - config.envs
    for step in range(1, last + 1):
        if step == first + 1:
            start_time = time.perf_counter()
        eps = epsilon(step - 1, start=config.eps_start, end=config.eps_end,
                      decay_steps=config.eps_decay_steps,
                      warmup_steps=config.learning_starts_steps)
        action = agent.act(np.asarray(obs), eps, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        buffer.add(np.asarray(obs), np.asarray(next_obs), np.array([action]),
                   np.array([envs.learning_reward(reward)]), np.array([terminated]), [info])
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step > config.learning_starts_steps and step % config.train_every_steps == 0:
            data = buffer.sample(config.batch_size)
            agent.learn(SimpleNamespace(
                states=data.observations.numpy(), next_states=data.next_observations.numpy(),
                actions=data.actions.numpy().reshape(-1),
                rewards=data.rewards.numpy().reshape(-1),
                discounts=(config.gamma * (1.0 - data.dones)).numpy().reshape(-1)))
        if step % config.target_update_steps == 0:
            agent.sync_target()
    env.close()
    return (last - first) / (time.perf_counter() - start_time)


def run_trainer(config: Config, phases: dict[str, float] | None = None) -> float:
    """Agent steps per second of train() between learning_starts + WARM_STEPS (aligned) and the
    last iteration before its final evaluation. phases: filled with the seconds spent in each
    phase of PHASES over that window (instrumented run)."""
    marks: dict[int, float] = {}
    first, last = align(config.learning_starts_steps + WARM_STEPS), config.total_steps - config.envs

    def clock(step: int) -> bool:
        if step in (first, last):
            marks[step] = time.perf_counter()
            if phases is not None and step == first:
                phases.update(dict.fromkeys(PHASES, 0.0))
        return step == last

    if phases is None:
        train(config, stop_when=clock)
    else:
        with instrumented(phases):
            train(config, stop_when=clock)
    return (last - first) / (marks[last] - marks[first])


class instrumented:
    """Wraps the methods of each phase with perf_counter, summing seconds into phases."""

    def __init__(self, phases: dict[str, float]) -> None:
        from atari_dqn.replay import ReplayMemory

        self.phases = phases
        self.targets = [(envs.TrainEnvs, "step", "env"), (Agent, "act_batch", "act"),
                        (Agent, "learn", "learn"), (ReplayMemory, "append_batch", "replay"),
                        (ReplayMemory, "states", "replay"), (ReplayMemory, "_sample", "replay")]
        self.originals: list[tuple[type, str, object]] = []

    def __enter__(self) -> instrumented:
        for owner, name, phase in self.targets:
            original = getattr(owner, name)
            self.originals.append((owner, name, original))
            setattr(owner, name, self._timed(original, phase))
        return self

    def _timed(self, method, phase: str):
        phases = self.phases

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - started
        return timed

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)


def measure(row: str, prioritized: bool, args: argparse.Namespace,
            phases: dict[str, float] | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        match = ENVS_ROW.match(row)
        if match:
            defaults = DEFAULTS if match["defaults"] else {}
            config = bench_config(args, prioritized, out, envs=int(match["n"]),
                                  env_processes=args.env_processes,
                                  precision="bf16" if match["bf16"] else "fp32", **defaults)
            return run_trainer(config, phases)
        if row.startswith("plain"):
            config = bench_config(args, prioritized, out, compile=False)
            if row == "plain-sb3":
                return run_plain_sb3(config)
            return run_plain(config, fused="fused" in row, channels_last="cl" in row)
        extra: dict = {}
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
    parser.add_argument("--no-sb3", dest="sb3", action="store_false",
                        help="skip the plain-sb3 row (it needs stable-baselines3: .[bench])")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--timed-steps", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", type=int, nargs="*", default=[1, 2, 4, 8],
                        help="games at once of the 'trainer --envs N' rows (divisors of 8; "
                             "none: no such rows)")
    parser.add_argument("--env-processes", type=int, default=0,
                        help="child processes stepping the games of those rows (0: in-process)")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the instrumented runs (where the time goes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--instrument", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(n < 1 or ALIGN % n for n in args.envs):
        parser.error(f"--envs: each must divide {ALIGN}, got {args.envs}")
    if args.worker:
        row, prioritized = json.loads(args.worker)
        phases: dict[str, float] | None = {} if args.instrument else None
        rate = measure(row, prioritized, args, phases)
        print(json.dumps([rate, phases]))
        return

    modes = [False, True]
    if args.prioritized != args.uniform:
        modes = [args.prioritized]
    envs_rows = [f"trainer --envs {n}" for n in args.envs]
    if args.envs:
        envs_rows += sorted({f"trainer defaults --envs {n}" for n in (1, max(args.envs))},
                            key=lambda row: int(row.split()[-1]))
        # --precision bf16 at the largest --envs, plain settings and defaults
        envs_rows += [f"trainer{d} --envs {max(args.envs)} --precision bf16"
                      for d in ("", " defaults")]
    rows = ["plain", *(["plain-sb3"] if args.sb3 else []), *(LEVER_ROWS if args.levers else ()),
            "trainer --no-compile", "trainer",
            *envs_rows]

    def rows_for(prioritized: bool) -> list[str]:
        return [row for row in rows if not (prioritized and row == "plain-sb3")]  # uniform only

    def worker(row: str, prioritized: bool, instrument: bool = False) -> tuple[float, dict]:
        cmd = [sys.executable, __file__, "--worker", json.dumps([row, prioritized]),
               "--learning-starts", str(args.learning_starts),
               "--timed-steps", str(args.timed_steps), "--seed", str(args.seed),
               "--env-processes", str(args.env_processes),
               *(["--instrument"] if instrument else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{row} failed:\n{done.stderr[-3000:]}")
        rate, phases = json.loads(done.stdout.strip().splitlines()[-1])
        return float(rate), phases or {}

    results: dict[tuple[str, bool], list[float]] = {}
    for repeat in range(args.repeats):
        for prioritized in modes:
            for row in rows_for(prioritized):  # alternate: slow spells hit every row
                rate, _ = worker(row, prioritized)
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
        for row in rows_for(prioritized):
            rates = results[(row, prioritized)]
            median = statistics.median(rates)
            print(f"| {'prioritized' if prioritized else 'uniform'} | {row}: {row_name(row)} | "
                  f"{median:.1f} [{min(rates):.1f}-{max(rates):.1f}] | {median / plain:.2f}x |")
    if len(modes) == 2:
        uniform, per = (statistics.median(results[("trainer", p)]) for p in modes)
        print(f"\ntrainer, prioritized vs uniform: {per / uniform - 1:+.1%}")
    if args.envs:
        best = max(args.envs, key=lambda n: statistics.median(results[(f"trainer --envs {n}",
                                                                       modes[0])]))
        rate = statistics.median(results[(f"trainer --envs {best}", modes[0])])
        plain = statistics.median(results[("plain", modes[0])])
        defaults = statistics.median(results[("trainer defaults --envs 1", modes[0])])
        print(f"\nbest --envs {best}: {rate:.1f} agent steps/s = {rate / plain:.2f}x the plain "
              f"loop ({plain:.1f}); the trainer with its defaults at --envs 1: {defaults:.1f}")
        bf16 = statistics.median(results[(f"trainer --envs {max(args.envs)} --precision bf16",
                                          modes[0])])
        print(f"--envs {max(args.envs)} --precision bf16: {bf16:.1f} = {bf16 / plain:.2f}x")
        if ("plain-sb3", modes[0]) in results:
            sb3 = statistics.median(results[("plain-sb3", modes[0])])
            print(f"against the plain loop with SB3's ReplayBuffer ({sb3:.1f}): "
                  f"{rate / sb3:.2f}x, with bf16 {bf16 / sb3:.2f}x")
    if args.breakdown and args.envs:
        print(f"\nwhere an agent step's time goes (ms; one instrumented run each, "
              f"{'prioritized' if modes[0] else 'uniform'} replay, plain settings)\n")
        print("| --envs | steps/s | env | act | replay | learn | other |")
        print("|---|---|---|---|---|---|---|")
        first, last = window(args)
        for n in args.envs:
            rate, phases = worker(f"trainer --envs {n}", modes[0], instrument=True)
            per_step = {k: 1000 * v / (last - first) for k, v in phases.items()}
            other = 1000 / rate - sum(per_step.values())
            print(f"| {n} | {rate:.1f} | " + " | ".join(f"{per_step.get(k, 0.0):.2f}"
                                                       for k in PHASES) + f" | {other:.2f} |")


if __name__ == "__main__":
    main()
