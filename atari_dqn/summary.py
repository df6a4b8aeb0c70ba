"""Draw the learning curves of several runs in one figure:

    python -m atari_dqn.summary rewards/*/ --out summary.png          # one curve per run
    python -m atari_dqn.summary rewards/*/ --arms --out summary.png   # one per arm
    python -m atari_dqn.summary rewards/*/ --table    # last and best scores, arm means (Markdown)

Each argument is a run folder holding a rewards.txt; the folder's name labels its curve (its path
as given, where two runs share a name). A folder without a rewards.txt that holds run folders
(rewards/offline) stands for the runs in it, so `rewards/*/` names every run there. Every
rewards.txt and config.json is read and checked before anything is drawn: a bad line or file is
an error naming it (status 2), and so is an existing --out without --force. With
--arms, runs whose config.json agree on every learning setting (all but the seed and what a
resume may change) form one arm, drawn as the mean over its seeds with the range (min to max)
shaded, at the evaluation steps all its runs reached; the arm is labelled by the flags that differ
from main.py's defaults (an offline arm: "offline --loss L" and its other flags). A run without
config.json is an arm of its own, named after its folder.

Offline runs count gradient updates where online runs count agent steps. Drawn together, the
x axis is gradient updates, and an online run's evaluation at agent step s is placed at the
updates it had made by then: one every --train-every agent steps past --learning-starts
(online_updates()). So an offline arm can be read against the online run that made its data.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atari_dqn.checkpoint import UPDATE_UNIT
from atari_dqn.config import PRESETS, RESUME_MAY_CHANGE, Config, flag_of, saved_settings
from atari_dqn.evaluate import X_LABEL, parse_rewards, plt  # plt: Agg, files only
from atari_dqn.files import DiskError, atomic_write

NOT_AN_ARM = {"seed", *RESUME_MAY_CHANGE}  # settings in which the runs of one arm may differ
REWARDS, CONFIG = "rewards.txt", "config.json"


class RunFileError(ValueError):
    """A run's rewards.txt or config.json is unusable; the message names the file (and line)."""


def read_rewards(file: Path) -> list[tuple[int, int, float]]:
    """rewards.txt's rows (evaluation, step, mean score), each line checked: anything but three
    numbers (a blank, binary or cut line), or a score that is not finite, is a RunFileError."""
    try:
        data = file.read_bytes()
    except OSError as e:
        raise RunFileError(f"{file}: unreadable ({e.strerror or e})") from None
    rows = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            row = parse_rewards(raw.decode("ascii"))
            if len(row) != 1 or not math.isfinite(row[0][2]):
                raise ValueError
        except ValueError:  # UnicodeDecodeError too
            raise RunFileError(f"{file}: line {number}: not 'evaluation step score' "
                               f"({raw[:40].decode('ascii', 'backslashreplace')!r})") from None
        rows += row
    return rows


def read_settings(run: Path) -> dict | None:
    """The run's settings from its config.json (read by saved_settings), checked as Config checks
    them (a file that is not a JSON object of known, valid settings is a RunFileError), or None
    without one."""
    file = run / CONFIG
    if not file.is_file():
        return None
    try:
        text = file.read_text()
        saved = json.loads(text)
        if not isinstance(saved, dict):
            raise ValueError(f"a JSON {type(saved).__name__}, not an object of settings")
        Config.from_json(text)  # raises on an unknown setting or an invalid value
    except OSError as e:
        raise RunFileError(f"{file}: unreadable ({e.strerror or e})") from None
    except (ValueError, TypeError) as e:  # JSONDecodeError (it names the line), ConfigError
        raise RunFileError(f"{file}: not a run's settings: {e}") from None
    return saved_settings(saved)


@dataclass(frozen=True)
class Run:
    """A run folder, its files read and checked once (read_run)."""
    folder: Path
    rows: list[tuple[int, int, float]]  # rewards.txt: (evaluation, step, mean score)
    settings: dict | None  # config.json through saved_settings; None without one

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def offline(self) -> bool:
        return bool((self.settings or {}).get("offline"))


def read_run(folder: Path) -> Run:
    return Run(folder, read_rewards(folder / REWARDS), read_settings(folder))


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders that paths name: a folder with a rewards.txt is a run; one without that
    holds runs (rewards/offline) stands for them, in name order. A run named twice counts once.
    Anything else is a RunFileError."""
    folders: dict[Path, Path] = {}
    for path in paths:
        if (path / REWARDS).is_file():
            found = [path]
        elif path.is_dir():
            try:
                found = sorted(child for child in path.iterdir() if (child / REWARDS).is_file())
            except OSError as e:
                raise RunFileError(f"{path}: unreadable ({e.strerror or e})") from None
            if not found:
                raise RunFileError(f"no {REWARDS} in {path} nor in the folders in it")
        else:
            raise RunFileError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}")
        for folder in found:
            folders.setdefault(folder.resolve(), folder)
    return list(folders.values())


def labels(runs: list[Run]) -> list[str]:
    """Each run's label: its folder's name, or its path where two runs share a name."""
    names = [run.name for run in runs]
    return [run.name if names.count(run.name) == 1 else str(run.folder) for run in runs]


def _flags(settings: dict, offline: bool = False) -> str:
    """The flags that set `settings` where they differ from the defaults of their --preset;
    'defaults' if none. An offline run's: 'offline --loss L' and the others."""
    preset = PRESETS.get(settings.get("preset", ""), {})
    flags = ["offline"] if offline else []
    for f in dataclasses.fields(Config):
        if f.name in NOT_AN_ARM or f.name not in settings or not f.metadata["flag"]:
            continue
        value = settings[f.name]
        if value == preset.get(f.name, f.default) and not (offline and f.name == "loss"):
            continue
        flag = flag_of(f.name)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {value}")
    return " ".join(flags) or "defaults"


def online_updates(settings: dict, step: int) -> int:
    """The gradient updates an online run with these settings has made by agent step `step`:
    one at every multiple of --train-every past --learning-starts (train.py's loop)."""
    every, starts = settings["train_every_steps"], settings["learning_starts_steps"]
    return max(0, step // every - starts // every)


def scores_of(run: Run, in_updates: bool = False) -> dict[int, float]:
    """The run's evaluations, step -> mean score; with in_updates an online run's steps are
    the updates it had made by then (an offline run's already are)."""
    if in_updates and not run.offline:
        if run.settings is None:
            raise RunFileError(f"{run.folder}: without {CONFIG} its agent steps cannot be put in "
                               f"gradient updates beside offline runs")
        return {online_updates(run.settings, step): score for _, step, score in run.rows}
    return {step: score for _, step, score in run.rows}


def arms_of(runs: list[Run]) -> dict[str, list[Run]]:
    """label -> the runs of that arm, in the order given. The label is the arm's flags and its
    number of seeds."""
    groups: dict[str, tuple[str, list[Run]]] = {}
    for run in runs:
        if run.settings is not None:
            settings = {k: v for k, v in run.settings.items() if k not in NOT_AN_ARM}
            key = json.dumps(settings, sort_keys=True)
            name = _flags(settings, offline=run.offline)
        else:
            key, name = f"folder:{run.folder.resolve()}", run.name
        groups.setdefault(key, (name, []))[1].append(run)
    names = [name for name, _ in groups.values()]
    # Two arms that would share a label (folders of one name, settings without a flag such as
    # the offline data's checksum) are told apart by their first run's path.
    return {f"{name if names.count(name) == 1 else f'{name} [{members[0].folder}]'} "
            f"({len(members)} seed{'s' if len(members) > 1 else ''})": members
            for name, members in groups.values()}


def arm_curve(runs: list[Run], in_updates: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over the runs' scores at the evaluation steps all of them reached
    (in gradient updates with in_updates: scores_of())."""
    curves = [scores_of(run, in_updates) for run in runs]
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    scores = np.array([[curve[step] for step in steps] for curve in curves]).reshape(len(runs), -1)
    return np.array(steps), scores.mean(axis=0), scores.min(axis=0), scores.max(axis=0)


def x_axis(runs: list[Run]) -> tuple[bool, str]:
    """(in_updates, the x axis label) of a figure of these runs: agent steps if all are online,
    gradient updates if any is offline."""
    offline = [run.offline for run in runs]
    if not any(offline):
        return False, X_LABEL
    return True, UPDATE_UNIT if all(offline) else f"{UPDATE_UNIT} (online runs: made by then)"


def plot_arms(arms: dict[str, list[Run]], png: Path, title: str) -> None:
    """One line per arm (the mean over its runs) with its range shaded; an arm may be one run."""
    in_updates, x_label = x_axis([run for runs in arms.values() for run in runs])
    curves = {label: arm_curve(runs, in_updates) for label, runs in arms.items()}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, (steps, mean, low, high) in curves.items():
        line, = ax.plot(steps, mean, marker="o", label=label)
        if len(arms[label]) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x_label)
    several = any(len(runs) > 1 for runs in arms.values())
    ax.set_ylabel("mean evaluation score" + (" (line: mean over seeds, band: range)"
                                             if several else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def table(arms: dict[str, list[Run]]) -> str:
    """Markdown: each run's last and best score, then each arm's mean and range over its runs at
    the last evaluation step all of them reached."""
    lines = ["| run | arm | last score (step) | best score (step) |", "|---|---|---|---|"]
    members = [(label, run) for label, runs in arms.items() for run in runs]
    for (label, run), name in zip(members, labels([run for _, run in members])):
        if not run.rows:  # a run stopped before its first evaluation
            lines.append(f"| {name} | {label} | - | - |")
            continue
        _, last_step, last = run.rows[-1]
        _, best_step, best = max(run.rows, key=lambda row: (row[2], -row[1]))  # the first best
        lines.append(f"| {name} | {label} | {last:.1f} ({last_step}) "
                     f"| {best:.1f} ({best_step}) |")
    lines += ["", "| arm | step | mean | range |", "|---|---|---|---|"]
    for label, runs in arms.items():
        steps, mean, low, high = arm_curve(runs)
        if len(steps):
            lines.append(f"| {label} | {steps[-1]} | {mean[-1]:.1f} "
                         f"| {low[-1]:.1f}-{high[-1]:.1f} |")
    return "\n".join(lines)


def out_problem(out: Path, force: bool) -> str | None:
    """Why the figure cannot be written to out (checked before any work), or None."""
    if out.is_dir():
        return f"--out {out} is a folder; name the PNG file to write"
    if out.exists() and not force:
        return f"--out {out} already exists; name another file, or add --force to replace it"
    if not out.parent.is_dir():
        return f"--out {out}: no folder {out.parent} to write it in"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atari_dqn.summary",
                                     description=__doc__.splitlines()[0].rstrip(":"))
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run folders (each with a rewards.txt). A folder without one that "
                             "holds run folders (rewards/offline) stands for the runs in it, so "
                             "rewards/*/ names every run; a run named twice counts once")
    parser.add_argument("--out", type=Path, default=Path("summary.png"),
                        help="the PNG to write (default: %(default)s); an existing file is "
                             "refused unless --force")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--title", default="evaluation score (whole games, eps 0.05)",
                        help="the figure's title (default: %(default)s)")
    parser.add_argument("--arms", action="store_true",
                        help="one curve per arm (runs alike but for the seed): the mean over its "
                             "seeds, the range shaded")
    parser.add_argument("--table", action="store_true",
                        help="print a Markdown table instead of drawing (--out is not written): "
                             "each run's last and best score, and each arm's mean and range at "
                             "the last step its runs all reached")
    args = parser.parse_args(argv)
    try:
        problem = None if args.table else out_problem(args.out, args.force)
        if problem:
            raise RunFileError(problem)
        runs = [read_run(folder) for folder in run_folders(args.runs)]
        if args.table:
            print(table(arms_of(runs)))
            return 0
        arms = (arms_of(runs) if args.arms
                else {label: [run] for label, run in zip(labels(runs), runs)})
        plot_arms(arms, args.out, title=args.title)
    except (RunFileError, DiskError) as e:  # DiskError: the figure could not be written
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
