"""Draw the learning curves of several runs in one figure:

    python -m atari_dqn.summary rewards/*/ --out rewards/summary.png

Each argument is a run folder holding a rewards.txt; the folder's name labels its curve.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atari_dqn.evaluate import plot_curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atari_dqn.summary", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a rewards.txt)")
    parser.add_argument("--out", type=Path, default=Path("rewards/summary.png"), help="the PNG to write")
    parser.add_argument("--title", default="evaluation score (whole games, eps 0.05)")
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not (run / "rewards.txt").is_file()]
    if missing:
        print(f"{parser.prog}: error: no rewards.txt in {', '.join(missing)}", file=sys.stderr)
        return 2
    plot_curves({run.name: run / "rewards.txt" for run in args.runs}, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
