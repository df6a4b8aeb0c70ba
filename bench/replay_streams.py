"""Replay memory with several streams: bytes per transition of a full memory, and append cost.

A memory of --capacity transitions is filled through append_batch by --streams streams of random
84x84 frames, episodes of 150-1,200 steps each (a reset frame starts the next one), until it has
wrapped; then it reports bytes_allocated() and the growth of resident memory, per transition.
Then it times --steps batches of appends, once with one append_batch call per step and once
with one append(..., stream=i) per row, in CPU microseconds per transition. Each configuration
runs in a fresh process so resident-memory readings don't mix.

    python bench/replay_streams.py                          # 200,000 transitions, 8 streams, both kinds
    python bench/replay_streams.py --capacity 50000 --streams 4
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

FRAME_SHAPE = (84, 84)
EPISODE_STEPS = (150, 1200)
FRAME_POOL = 256


def worker(kind: str, capacity: int, streams: int, steps: int) -> dict:
    import psutil

    from atari_dqn.replay import PrioritizedReplayMemory, ReplayMemory

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (FRAME_POOL, *FRAME_SHAPE), dtype=np.uint8)
    before = psutil.Process().memory_info().rss
    memory = (PrioritizedReplayMemory if kind == "per" else ReplayMemory)(capacity, streams=streams)
    for stream in range(streams):
        memory.start_episode(pool[stream], stream=stream)
    steps_left = rng.integers(EPISODE_STEPS[0], EPISODE_STEPS[1] + 1, streams)
    actions = np.zeros(streams, np.int64)
    rewards = np.ones(streams, np.float32)
    truncated = np.zeros(streams, bool)
    rows = np.arange(streams) * 7

    def frames(step):
        return pool[(rows + step) % FRAME_POOL]

    step = 0
    while memory.appended < capacity + 10_000:
        step += 1
        steps_left -= 1
        terminated = steps_left == 0
        memory.append_batch(actions, rewards, frames(step), terminated, truncated, reset_frames=frames(step + 1))
        steps_left[terminated] = rng.integers(EPISODE_STEPS[0], EPISODE_STEPS[1] + 1, int(terminated.sum()))
    resident = psutil.Process().memory_info().rss - before
    result = {"kind": kind, "capacity": capacity, "streams": streams,
              "allocated_per_transition": memory.nbytes / capacity, "resident_per_transition": resident / capacity}
    no = np.zeros(streams, bool)
    for mode in ("append_batch", "append"):
        start = time.process_time()
        for _ in range(steps):
            step += 1
            if mode == "append_batch":
                memory.append_batch(actions, rewards, frames(step), no, no)
            else:
                for i, frame in enumerate(frames(step)):
                    memory.append(0, 1.0, frame, False, stream=i)
        result[f"{mode}_us"] = (time.process_time() - start) / (steps * streams) * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=200_000, help="transitions (default 200,000)")
    parser.add_argument("--streams", type=int, default=8, help="streams (default 8)")
    parser.add_argument("--steps", type=int, default=2_000, help="timed batches of appends (default 2,000)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.capacity, args.streams, args.steps)))
        return
    print(f"capacity {args.capacity:,} transitions, {args.streams} streams, 84x84 frames\n")
    print("| memory | bytes_allocated per transition | resident bytes per transition | "
          "µs CPU per transition: append_batch | append per row |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("uniform", "per"):
        command = [sys.executable, __file__, "--worker", kind, "--capacity", str(args.capacity), "--streams",
                   str(args.streams), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{kind}: failed\n{done.stderr}", file=sys.stderr)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {kind} | {r['allocated_per_transition']:,.0f} | {r['resident_per_transition']:,.0f} | "
              f"{r['append_batch_us']:.2f} | {r['append_us']:.2f} |")


if __name__ == "__main__":
    main()
