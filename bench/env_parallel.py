"""Can training games step at the same time? Two measurements, printed as tables.

1. Does ale-py's ALEInterface.act release the GIL? One long act() call (ALE's own frame_skip set
   to --act-frames emulator frames) runs in the main thread while a Python thread counts. A call
   that releases the GIL lets the counter run during it; one that holds it stops the counter
   (the counter then only moves around the call's ends). Control: hashlib.sha256 on a large
   buffer, which releases the GIL. The test does not depend on how loaded the machine is.
2. Agent steps/s of envs.TrainEnvs for N games, stepped in this process (processes=0) and in
   child processes, random actions, median of --repeats. (On a machine shared with other work,
   or where the scheduler groups a session's processes, child processes may not show a gain.)

    python bench/env_parallel.py                       # both
    python bench/env_parallel.py --envs 1 2 4 8 --processes 0 2 4
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import threading
import time

import numpy as np
from ale_py import ALEInterface, LoggerMode, roms

from atari_dqn.envs.atari import TrainEnvs


def counter_during(call) -> tuple[int, float]:
    """(increments a Python thread made while call() ran, seconds call() took)."""
    count, stop = [0], [False]

    def spin() -> None:
        while not stop[0]:
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.2)  # let the counter get going
    before, started = count[0], time.perf_counter()
    call()
    during, seconds = count[0] - before, time.perf_counter() - started
    stop[0] = True
    thread.join()
    return during, seconds


def gil_table(act_frames: int) -> None:
    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("frame_skip", act_frames)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path("breakout"))
    data = bytes(300_000_000)
    print(f"{'call':28s} {'seconds':>8s} {'counter during call':>20s} {'counts/s':>12s}")
    for _ in range(3):
        for name, call in ((f"ale.act ({act_frames:,} frames)", lambda: ale.act(0)),
                           ("sha256 300 MB (control)", lambda: hashlib.sha256(data))):
            during, seconds = counter_during(call)
            print(f"{name:28s} {seconds:8.2f} {during:20,d} {during / seconds:12,.0f}")


def steps_per_second(n: int, processes: int, steps: int) -> float:
    vector = TrainEnvs("Breakout", n, seed=0, processes=processes)
    try:
        vector.reset()
        actions = np.random.default_rng(0).integers(vector.action_count, size=(steps, n))
        vector.step(actions[0])  # untimed: the first call starts the processes' work
        started = time.perf_counter()
        for row in actions[1:]:
            vector.step(row)
        return n * (steps - 1) / (time.perf_counter() - started)
    finally:
        vector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--act-frames", type=int, default=20_000)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--processes", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--steps", type=int, default=500, help="vector steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-gil", action="store_true")
    args = parser.parse_args()
    if not args.skip_gil:
        gil_table(args.act_frames)
        print()
    print(f"{'envs':>4s} {'processes':>9s} {'agent steps/s (median)':>23s}")
    for n in args.envs:
        for processes in args.processes:
            if processes > n:
                continue
            rates = [steps_per_second(n, processes, args.steps) for _ in range(args.repeats)]
            print(f"{n:4d} {processes:9d} {statistics.median(rates):23,.0f}", flush=True)


if __name__ == "__main__":
    main()
