"""Replay memory benchmark: time per env step and resident bytes per transition.

Workload (the same for every memory): a memory of --capacity transitions is
filled with random episodes of 150-1,200 steps of random 84x84 frames; then,
per env step, one frame is appended, and every 4th step a batch of 32 is sampled
and (prioritized) 32 priorities are updated. Compared in one run:

  ours-uniform   atari_dqn.replay.ReplayMemory
  ours-per       atari_dqn.replay.PrioritizedReplayMemory
  cpprb-per      cpprb.PrioritizedReplayBuffer with next_of="obs" and
                 stack_compress="obs" (pip install -e ".[bench]")

plus the footprint of a 1,000,000-transition PrioritizedReplayMemory. Each
memory runs in its own fresh process so resident-memory readings don't mix.

    python bench/replay_bench.py                 # full table (about 3 minutes)
    python bench/replay_bench.py --no-million    # skip the 7 GB footprint run
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

FRAME_SHAPE = (84, 84)
STACK = 4
BATCH = 32
SAMPLE_EVERY_STEPS = 4
EPISODE_STEPS = (150, 1200)
FRAME_POOL = 256  # distinct random frames cycled through, so the harness does not time an RNG


def resident_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class Workload:
    """Random episodes of random frames; the same stream for every memory."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.frames = self.rng.integers(0, 256, (FRAME_POOL, *FRAME_SHAPE), dtype=np.uint8)
        self.priorities = np.abs(self.rng.normal(size=(1024, BATCH)))
        self.step = 0
        self.steps_left = 0

    def frame(self) -> np.ndarray:
        self.step += 1
        return self.frames[self.step % FRAME_POOL]

    def next_episode_length(self) -> int:
        return int(self.rng.integers(EPISODE_STEPS[0], EPISODE_STEPS[1] + 1))


class Ours:
    def __init__(self, capacity: int, prioritized: bool) -> None:
        from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

        self.prioritized = prioritized
        self.memory = PrioritizedReplayMemory(capacity) if prioritized else ReplayMemory(capacity)

    def start(self, frame):
        self.memory.start_episode(frame)

    def step(self, action, reward, frame, terminated):
        self.memory.append(action, reward, frame, terminated)

    def sample_and_update(self, priorities):
        if self.prioritized:
            batch = self.memory.sample(BATCH, 0.4)
            self.memory.update_priorities(batch.ids, priorities)
        else:
            self.memory.sample(BATCH)


class Cpprb:
    """cpprb's prioritized buffer, fed stacked observations as its documentation shows."""

    def __init__(self, capacity: int) -> None:
        from cpprb import PrioritizedReplayBuffer

        self.buffer = PrioritizedReplayBuffer(
            capacity,
            {"obs": {"shape": (STACK, *FRAME_SHAPE), "dtype": np.uint8}, "act": {"dtype": np.int64},
             "rew": {}, "done": {}},
            next_of="obs",
            stack_compress="obs",
        )
        self.stack = np.zeros((STACK, *FRAME_SHAPE), np.uint8)

    def start(self, frame):
        self.buffer.on_episode_end()
        self.stack[:] = frame  # pad with the first observation, as FrameStackObservation does

    def step(self, action, reward, frame, terminated):
        next_stack = np.empty_like(self.stack)
        next_stack[:-1] = self.stack[1:]
        next_stack[-1] = frame
        self.buffer.add(obs=self.stack, act=action, rew=reward, next_obs=next_stack, done=terminated)
        self.stack = next_stack

    def sample_and_update(self, priorities):
        batch = self.buffer.sample(BATCH, beta=0.4)
        self.buffer.update_priorities(batch["indexes"], priorities)


def run_episodes(memory, workload: Workload, steps: int, sample: bool) -> None:
    for _ in range(steps):
        if workload.steps_left == 0:
            memory.start(workload.frame())
            workload.steps_left = workload.next_episode_length()
        workload.steps_left -= 1
        memory.step(workload.step % 4, 1.0, workload.frame(), workload.steps_left == 0)
        if sample and workload.step % SAMPLE_EVERY_STEPS == 0:
            memory.sample_and_update(workload.priorities[workload.step % len(workload.priorities)])


def worker(name: str, capacity: int, steps: int) -> dict:
    workload = Workload(seed=0)
    before = resident_bytes()
    memory = Cpprb(capacity) if name == "cpprb-per" else Ours(capacity, prioritized=name != "ours-uniform")
    fill_start = time.perf_counter()
    run_episodes(memory, workload, capacity, sample=False)
    fill_seconds = time.perf_counter() - fill_start
    resident = resident_bytes() - before
    result = {"name": name, "capacity": capacity, "resident_bytes": resident,
              "bytes_per_transition": resident / capacity, "fill_us_per_step": fill_seconds / capacity * 1e6}
    if steps > 0:
        run_episodes(memory, workload, 2000, sample=True)  # warm up
        start = time.perf_counter()
        run_episodes(memory, workload, steps, sample=True)
        result["us_per_step"] = (time.perf_counter() - start) / steps * 1e6
    return result


def spawn(name: str, capacity: int, steps: int) -> dict | None:
    command = [sys.executable, __file__, "--worker", name, "--capacity", str(capacity), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name}: failed\n{done.stderr.strip().splitlines()[-1] if done.stderr else ''}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=100_000, help="transitions in the memory (default 100,000)")
    parser.add_argument("--steps", type=int, default=20_000, help="timed env steps after filling (default 20,000)")
    parser.add_argument("--no-million", action="store_true", help="skip the 1,000,000-transition footprint run")
    parser.add_argument("--only", default="ours-uniform,ours-per,cpprb-per", help="comma-separated memories to run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.capacity, args.steps)))
        return

    results = [r for r in (spawn(name, args.capacity, args.steps) for name in args.only.split(",")) if r]
    by_name = {r["name"]: r for r in results}
    print(f"capacity {args.capacity:,} transitions, episodes of {EPISODE_STEPS[0]}-{EPISODE_STEPS[1]} steps, "
          f"{args.steps:,} timed env steps, batch {BATCH} every {SAMPLE_EVERY_STEPS} steps\n")
    print("| memory | µs per env step | vs cpprb-per | resident bytes per transition | fill µs per append |")
    print("|---|---:|---:|---:|---:|")
    cpprb = by_name.get("cpprb-per", {}).get("us_per_step")
    for r in results:
        speedup = f"{cpprb / r['us_per_step']:.1f}x" if cpprb else "n/a"
        print(f"| {r['name']} | {r['us_per_step']:.1f} | {speedup} | {r['bytes_per_transition']:,.0f} | "
              f"{r['fill_us_per_step']:.1f} |")
    if not args.no_million:
        million = spawn("ours-per", 1_000_000, 0)
        if million:
            print(f"\nPrioritizedReplayMemory with 1,000,000 transitions: {million['resident_bytes'] / 1e9:.2f} GB "
                  f"resident ({million['bytes_per_transition']:,.0f} bytes per transition)")


if __name__ == "__main__":
    main()
