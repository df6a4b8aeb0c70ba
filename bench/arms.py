"""Cost per agent step of the learning issue's arms: agent steps/s of train() with the project's
learning defaults plus each arm's flags, measured in the same run, and each arm's cost per agent
step against --base (default `--head scalar`: the defaults from before the learning issue, its
"today").

The issue's rule: the default that `python main.py` uses may cost at most 1.5x today's wall
clock per agent step on a 2-core CPU. The workload is bench/throughput.py's (Breakout, a
100k-transition memory, --learning-starts agent steps of random play and WARM_STEPS of learning
untimed, then --timed-steps timed, evaluation pushed past the window), with the project's
learning defaults instead of the plain settings. Every measurement runs in a fresh process; the
arms alternate, --repeats times; the table gives medians and ranges.

    PYTHONPATH=. python bench/arms.py                       # every arm below (about 15 minutes)
    PYTHONPATH=. python bench/arms.py --arms defaults "--augment" "--precision bf16"
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import main as cli
from bench.throughput import DEFAULTS, bench_config, run_trainer

ARMS = ("defaults", "--head scalar", "--augment", "--precision bf16", "--envs 8",
        "--envs 8 --precision bf16", "--train-every 2 --precision bf16",
        "--envs 8 --train-every 2 --precision bf16", "--network impala")
BASE = "--head scalar"  # the defaults before the learning issue: the 1.5x rule's "today"
# --reset-every is no arm here: one reset per 100k steps costs nothing per agent step.


def measure(arm: str, args: argparse.Namespace) -> float:
    flags = [] if arm == "defaults" else shlex.split(arm)
    given = vars(cli.build_parser().parse_args(flags))
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_config(args, False, str(Path(tmp) / "run"), **{**DEFAULTS, **given})
        return run_trainer(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS),
                        help="main.py flags of each arm ('defaults': none)")
    parser.add_argument("--base", default=BASE,
                        help="the arm costs are relative to (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--timed-steps", type=int, default=1_504)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return
    if args.base not in args.arms:
        args.arms.insert(0, args.base)

    rates: dict[str, list[float]] = {arm: [] for arm in args.arms}
    for repeat in range(args.repeats):
        for arm in args.arms:  # alternate: slow spells hit every arm
            done = subprocess.run(
                [sys.executable, __file__, "--worker", arm, "--seed", str(args.seed),
                 "--learning-starts", str(args.learning_starts),
                 "--timed-steps", str(args.timed_steps)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{arm} failed:\n{done.stderr[-3000:]}")
            rates[arm].append(float(done.stdout.strip().splitlines()[-1]))
            print(f"  repeat {repeat + 1}: {arm}: {rates[arm][-1]:.1f} steps/s", file=sys.stderr,
                  flush=True)

    base = statistics.median(rates[args.base])
    print(f"\n{args.timed_steps} timed agent steps after {args.learning_starts} of random play; "
          f"median of {args.repeats} [range]; cost = steps/s of '{args.base}' / the arm's\n")
    print("| arm (flags on top of the defaults) | agent steps/s | cost per agent step |")
    print("|---|---|---|")
    for arm, values in rates.items():
        median = statistics.median(values)
        print(f"| {arm} | {median:.1f} [{min(values):.1f}-{max(values):.1f}] | "
              f"{base / median:.2f}x |")


if __name__ == "__main__":
    main()
