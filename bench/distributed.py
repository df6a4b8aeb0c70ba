"""Ape-X collection and learning rates: --actors K = 1, 2 against the one-process trainer, same
settings, in one run (each measurement in this process, one after another).

Workload: Breakout, --batch-size (32 by default), one update per --train-every 4 agent steps,
--learning-starts agent steps of learning-free play first (untimed), then --timed-steps agent
steps with learning on, timed from the first chunk (or loop iteration) past --learning-starts to
the run's end (no evaluation inside the window; Ray's start-up is outside it). Every trainer makes
one update per --train-every agent steps (the distributed ones held there by the rate limiter), so
updates/s = agent steps/s / --train-every. Bytes/transition: the pickled size of a chunk (what Ray
moves: numpy arrays out of band) over its agent steps. Learner idle: the share of the time the
learner waited for chunks with every update due made, as the progress line reports it (the run's
own TensorBoard scalar dist/learner_idle, one point per 1,000 agent steps), averaged over the
points past --learning-starts + 1,000. Each distributed run starts its own Ray instance, on
loopback (apex.LOCAL_RAY_HOST): it talks over loopback only.

    python bench/distributed.py                    # K = 1 2, 1.5 minutes on 2 quiet cores
    python bench/distributed.py --actors 1 2 4 --timed-steps 4000 --compile
    python bench/distributed.py --actors 14 --batch-size 128   # the learner at a larger batch
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

from atari_dqn.config import Config
from atari_dqn.modes import apex
from atari_dqn.modes.one_process import train
from atari_dqn.run.telemetry import LOG_EVERY_STEPS


def config_of(args: argparse.Namespace, out: Path, actors: int) -> Config:
    steps = args.learning_starts + args.timed_steps
    return Config(total_steps=steps, learning_starts_steps=args.learning_starts,
                  memory_capacity_transitions=steps, eval_every_steps=steps, eval_episodes=1,
                  eval_max_steps=10, threads=args.threads, compile=args.compile, actors=actors,
                  batch_size=args.batch_size,
                  tensorboard=actors > 0, out_dir=str(out / f"actors{actors}"))


def learner_idle(run: Path, after_step: int) -> float | None:
    """The mean of the run's dist/learner_idle points (percent) past after_step; None when it
    has none (a run shorter than after_step + LOG_EVERY_STEPS)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    if "dist/learner_idle" not in events.Tags()["scalars"]:  # no point logged at all
        return None
    values = [e.value for e in events.Scalars("dist/learner_idle") if e.step > after_step]
    return sum(values) / len(values) if values else None


class Window:
    """Time from the first agent step past learning_starts to the last one."""

    def __init__(self, start_step: int) -> None:
        self.start_step, self.first, self.last = start_step, None, None

    def at(self, step: int) -> None:
        if step >= self.start_step:
            now = time.perf_counter()
            if self.first is None:
                self.first = (now, step)
            self.last = (now, step)

    def rate(self) -> float:
        (t0, s0), (t1, s1) = self.first, self.last
        return (s1 - s0) / max(t1 - t0, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timed-steps", type=int, default=2_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch-size", type=int, default=Config().batch_size,
                        help="transitions per update, for every trainer in the table")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        window = Window(args.learning_starts)
        train(config_of(args, out, 0), stop_when=lambda step: window.at(step) or False)
        rows.append(("one process", window.rate(), None, None))
        for k in args.actors:
            window = Window(args.learning_starts)
            sizes: list[float] = []

            def on_chunk(memory, ids, chunk, window=window, sizes=sizes):
                window.at(memory.appended)
                if len(sizes) < 20:
                    sizes.append(len(pickle.dumps(chunk, protocol=5)) / chunk.steps)

            config = config_of(args, out, k)
            apex.train_distributed(config, on_chunk=on_chunk)
            idle = learner_idle(config.run_dir, args.learning_starts + LOG_EVERY_STEPS)
            rows.append((f"--actors {k}", window.rate(), sum(sizes) / len(sizes), idle))
    print(f"batch {args.batch_size}, one update per {Config().train_every_steps} agent steps")
    print(f"{'trainer':<14}{'agent steps/s':>15}{'updates/s':>11}{'bytes/transition':>18}"
          f"{'learner idle':>14}")
    every = Config().train_every_steps
    for name, rate, size, idle in rows:
        print(f"{name:<14}{rate:>15.0f}{rate / every:>11.1f}"
              f"{'-' if size is None else f'{size:.0f}':>18}"
              f"{'-' if idle is None else f'{idle:.0f}%':>14}")


if __name__ == "__main__":
    main()
