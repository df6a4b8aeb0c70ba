"""Make atari_dqn/data/dopamine_returns.csv from Dopamine's published baselines.

Dopamine (google/dopamine) publishes per-iteration training returns of its agents on 60 Atari
games under the protocol of Machado et al. 2018 (sticky actions 0.25, whole games, no life-loss
signal), in baselines/atari/data/<game>_CNN.json (the Nature CNN) and <game>_Impala.json (the
Impala encoder): JSON lists of {"Iteration": i, "Value": v, "Agent": name}, one entry per run and
iteration. One iteration is 250,000 agent steps (1M emulator frames); Value is the mean raw score
of the training games that ended in it. Runs are not named in those files: the k-th entry of an
(agent, iteration) is taken as run k, in file order.

    python tools/make_dopamine_returns.py DOPAMINE_CHECKOUT [--iterations 10]

writes one row per (game, encoder, agent, run, iteration) for the games of atari_dqn.suite's
named sets, iterations 0 .. N-1. Nothing is downloaded here or at run time: the CSV is committed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atari_dqn.scores import GAME_SETS  # noqa: E402 (after the path line)

OUT = Path(__file__).resolve().parents[1] / "atari_dqn" / "data" / "dopamine_returns.csv"
ENCODERS = {"CNN": "nature", "Impala": "impala"}  # Dopamine's file suffix -> --network


def rows_of(checkout: Path, game: str, suffix: str, iterations: int) -> list[list]:
    path = checkout / "baselines" / "atari" / "data" / f"{game.lower()}_{suffix}.json"
    entries = json.loads(path.read_text())
    runs: dict[tuple[str, int], list[float]] = defaultdict(list)
    for entry in entries:  # file order: run k of an (agent, iteration) is its k-th entry
        if entry["Iteration"] < iterations:
            runs[entry["Agent"], entry["Iteration"]].append(float(entry["Value"]))
    return [[game, ENCODERS[suffix], agent, run, iteration, f"{value:.3f}"]
            for (agent, iteration), values in sorted(runs.items())
            for run, value in enumerate(values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a clone of google/dopamine")
    parser.add_argument("--iterations", type=int, default=10,
                        help="iterations kept from the start (250,000 agent steps each)")
    args = parser.parse_args()
    games = sorted({game for games in GAME_SETS.values() for game in games})
    rows = [row for game in games for suffix in ENCODERS
            for row in rows_of(args.checkout, game, suffix, args.iterations)]
    with OUT.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["game", "network", "agent", "run", "iteration", "return"])
        writer.writerows(rows)
    print(f"{OUT}: {len(rows)} rows, {len(games)} games")
    return 0


if __name__ == "__main__":
    sys.exit(main())
