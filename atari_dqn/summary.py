"""Draw the learning curves of several runs in one figure:

    python -m atari_dqn.summary rewards/*/ --out summary.png          # one curve per run
    python -m atari_dqn.summary rewards/*/ --arms --out summary.png   # one per arm
    python -m atari_dqn.summary rewards/*/ --table    # last and best scores, arm means (Markdown)
    python -m atari_dqn.summary suites/dqn5 --suite   # a suite of games (atari_dqn.suite): tables,
                                                      # aggregates, Dopamine's agents; suite.png

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

With --suite, the one folder given is a suite (python -m atari_dqn.suite): its runs' games and
seeds come from their config.json, the games and seeds it should have from its suite.json. What
it prints and draws, and how each number is computed, is under "a suite" below and in
docs/suite.md.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atari_dqn.cli import OneLineParser, run_tool
from atari_dqn.config import (FRAME_SKIP, PRESETS, RESUME_MAY_CHANGE, Config, ConfigError, flag_of,
                              saved_settings)
from atari_dqn.learn.schedule import updates_made
from atari_dqn.run.checkpoint import UPDATE_UNIT
from atari_dqn.run.curve import X_LABEL, parse_rewards, plt  # plt: Agg, files only
from atari_dqn.run.episodes import EPISODES, HEADER
from atari_dqn.run.files import DiskError, atomic_write
from atari_dqn.scores import (DOPAMINE_ITERATION_STEPS, RANDOM_HUMAN, dopamine_returns,
                              human_normalized)

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
    one at every multiple of --train-every past --learning-starts (schedule.updates_made)."""
    return updates_made(step, train_every_steps=settings["train_every_steps"],
                        learning_starts_steps=settings["learning_starts_steps"])


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


# --- a suite: several games, human-normalized aggregates, Dopamine's agents -------------------
#
# The statistics are those of Agarwal et al. 2021 ("Deep Reinforcement Learning at the Edge of
# the Statistical Precipice"), computed by their library, rliable: over every (game, run) of
# human-normalized scores, arranged as a (runs, games) matrix,
#   IQM             the mean of the middle half of all runs x games scores (25% cut each end);
#   median, mean    of the per-game means over runs;
#   optimality gap  1 - the mean of min(score, 1): how far below human level, on average;
# each with a 95% stratified-bootstrap interval (runs resampled within each game, percentile
# method), seeded so that a summary is the same each time it is made. A training return is
# Dopamine's: the mean raw score of the training games that ended in an iteration of 250,000
# agent steps (1M emulator frames), one value per run and iteration.

EPISODE_COLUMNS = tuple(HEADER.strip().split(","))  # agent_step,game,score,steps
AGGREGATES = ("IQM", "median", "mean", "optimality gap")
BOOTSTRAP_REPS = 2_000  # rliable's figures use 2,000; its own default, 50,000, takes minutes here
BOOTSTRAP_SEED = 0
DOPAMINE_AGENTS = ("DQN", "C51", "QR-DQN", "IQN", "Rainbow")  # the table's order; others after
DOPAMINE_NETWORKS = ("nature", "impala")
RUN_NAME = re.compile(r"^(?P<game>.+)-seed(?P<seed>\d+)$")  # atari_dqn.suite's run folders


def read_episodes(file: Path) -> list[tuple[int, float]]:
    """episodes.csv's rows (atari_dqn/run/episodes.py) as (agent_step, score), each line checked:
    the header, then integers but for a finite score; anything else is a RunFileError naming
    the file and line. An empty file (a run killed as it wrote the header) has no rows."""
    try:
        lines = file.read_bytes().decode("ascii").splitlines()
    except OSError as e:
        raise RunFileError(f"{file}: unreadable ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise RunFileError(f"{file}: not a text file") from None
    if not lines:
        return []
    if tuple(lines[0].strip().split(",")) != EPISODE_COLUMNS:
        raise RunFileError(f"{file}: line 1: not the header {','.join(EPISODE_COLUMNS)}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            step, game, score, length = line.split(",")
            row = (int(step), int(game), float(score), int(length))
            if not math.isfinite(row[2]) or row[0] < 0 or row[1] < 0 or row[3] < 0:
                raise ValueError
        except ValueError:
            raise RunFileError(f"{file}: line {number}: not 'agent_step,game,score,steps' "
                               f"({line[:40]!r})") from None
        rows.append((row[0], row[2]))
    return rows


def iteration_returns(episodes: list[tuple[int, float]], steps_reached: int,
                      iteration_steps: int = DOPAMINE_ITERATION_STEPS) -> dict[int, float]:
    """Iteration i -> the mean score of the games that ended in agent steps
    (iteration_steps * i, iteration_steps * (i + 1)], for each iteration the run completed
    (steps_reached at or past its end) in which a game ended."""
    scores: dict[int, list[float]] = {}
    for step, score in episodes:
        if step >= 1:
            scores.setdefault((step - 1) // iteration_steps, []).append(score)
    return {i: float(np.mean(values)) for i, values in sorted(scores.items())
            if (i + 1) * iteration_steps <= steps_reached}


def aggregate_point(scores: np.ndarray) -> np.ndarray:
    """[IQM, median, mean, optimality gap] of a (runs, games) matrix of normalized scores."""
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_median(scores),
                     metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)])


def interval_estimates(scores: np.ndarray, aggregate=aggregate_point, reps: int = BOOTSTRAP_REPS
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, lows, highs) of aggregate over a (runs, games) matrix: rliable's 95%
    stratified-bootstrap percentile intervals. rliable draws its resamples from numpy's global
    generator (its random_state argument reaches only arch, which does not draw them), so that
    generator is seeded with BOOTSTRAP_SEED for the call, and put back as it was after it."""
    from rliable import library as rly

    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = rly.get_interval_estimates(
            {"x": np.asarray(scores, dtype=float)}, aggregate, reps=reps)
    finally:
        np.random.set_state(state)
    return points["x"], intervals["x"][0], intervals["x"][1]


def normalized_matrix(values: dict[str, list[float]], games: list[str]) -> np.ndarray:
    """(runs, games) human-normalized: column g holds values[g] (each game the same count)."""
    return np.array([[human_normalized(game, value) for value in values[game]]
                     for game in games]).T


def dopamine_values(table: dict, games: list[str], network: str, agent: str,
                    iteration: int) -> dict[str, list[float]] | None:
    """Each game's runs' training returns of one Dopamine agent at an iteration; None if the
    table lacks any of the games or runs there."""
    values = {}
    for game in games:
        runs = table.get((game, network, agent), {}).get(iteration)
        if not runs:
            return None
        values[game] = runs
    return values


def dopamine_agents(table: dict) -> list[tuple[str, str]]:
    """(network, agent) pairs of the table, in DOPAMINE_NETWORKS x DOPAMINE_AGENTS order."""
    found = {(network, agent) for _, network, agent in table}
    order = {name: i for i, name in enumerate(DOPAMINE_AGENTS)}
    return sorted(found, key=lambda pair: (DOPAMINE_NETWORKS.index(pair[0])
                                           if pair[0] in DOPAMINE_NETWORKS else 99,
                                           order.get(pair[1], 99), pair[1]))


def dopamine_label(network: str, agent: str) -> str:
    return f"Dopamine {agent} ({'Nature CNN' if network == 'nature' else network.capitalize()})"


@dataclass(frozen=True)
class SuiteRun:
    run: Run
    game: str
    seed: int
    episodes: list[tuple[int, float]] | None  # episodes.csv; None without one

    @property
    def steps_reached(self) -> int:
        """Agent steps at its last evaluation (and checkpoint)."""
        return max((step for _, step, _ in self.run.rows), default=0)


def suite_run(run: Run) -> SuiteRun:
    """The run's game and seed (its config.json, else its folder's name Game-seedS) and its
    episodes.csv."""
    if run.settings is not None:
        from atari_dqn.envs.atari import game_name

        try:
            game = game_name(run.settings["env_id"])
        except ConfigError as e:
            raise RunFileError(f"{run.folder / CONFIG}: {e}") from None
        seed = run.settings["seed"]
    else:
        match = RUN_NAME.match(run.name)
        if not match:
            raise RunFileError(f"{run.folder}: no {CONFIG}, and its name is not <Game>-seed<S>: "
                               f"its game and seed are unknown")
        game, seed = match["game"], int(match["seed"])
    episodes = run.folder / EPISODES
    return SuiteRun(run, game, seed, read_episodes(episodes) if episodes.is_file() else None)


def suite_settings(run: SuiteRun) -> dict:
    """The run's settings that all runs of a suite share: all but the game, the seed and what a
    resume may change."""
    return {k: v for k, v in run.run.settings.items() if k not in NOT_AN_ARM and k != "env_id"}


def read_suite(folder: Path) -> tuple[list[SuiteRun], list[str]]:
    """The runs of a suite folder, checked, and notes on what is missing. A folder without
    runs, two runs of one game and seed, and runs of other learning settings are RunFileErrors."""
    if not folder.is_dir():
        raise RunFileError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    runs = [suite_run(read_run(path)) for path in run_folders([folder])]
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((run.game, run.seed), run.run.folder)
        if other != run.run.folder:
            raise RunFileError(f"{other} and {run.run.folder} are both {run.game} seed {run.seed}")
    arms = {json.dumps(suite_settings(run), sort_keys=True): run
            for run in runs if run.run.settings is not None}
    if len(arms) > 1:
        a, b = list(arms.values())[:2]
        raise RunFileError(f"the runs of {folder} differ in settings ({a.run.name}: "
                           f"{_flags(suite_settings(a))}; {b.run.name}: "
                           f"{_flags(suite_settings(b))}): a suite is one set of settings")
    record_file = folder / "suite.json"
    notes = []
    if record_file.is_file():
        from atari_dqn.suite import SuiteError, read_record

        try:
            record = read_record(folder)
        except SuiteError as e:
            raise RunFileError(str(e)) from None
        expected = {(game, seed) for game in record["games"] for seed in range(record["seeds"])}
    else:
        expected = {(run.game, seed) for run in runs for seed in {r.seed for r in runs}}
    missing = sorted(expected - set(seen))
    if missing:
        notes.append(f"a partial suite: no evaluation yet from {len(missing)} of its "
                     f"{len(expected)} runs ({', '.join(f'{g} seed {s}' for g, s in missing)}); "
                     f"what is there is summarised")
    return sorted(runs, key=lambda r: (r.game, r.seed)), notes


def _range(values: list[float], digits: int) -> str:
    return (f"{np.mean(values):.{digits}f} ({min(values):.{digits}f} to "
            f"{max(values):.{digits}f})")


def _estimate(point: float, low: float, high: float) -> str:
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _iteration(i: int) -> str:
    steps, frames = DOPAMINE_ITERATION_STEPS, DOPAMINE_ITERATION_STEPS * FRAME_SKIP
    return (f"iteration {i} (agent steps {i * steps:,}-{(i + 1) * steps:,}, "
            f"{i * frames / 1e6:g}M-{(i + 1) * frames / 1e6:g}M frames)")


@dataclass
class SuiteSummary:
    """What summary --suite prints and draws."""
    games: list[str]                     # every game of the suite's runs
    normalized_games: list[str]          # those of the 57 with human and random scores
    per_game: list[str]                  # the per-game table's rows
    aggregates: list[str]                # the aggregate table's rows
    notes: list[str]
    curve_iterations: list[int] = dataclasses.field(default_factory=list)
    # iteration -> (IQM, low, high) of our training returns; (network, agent) -> IQMs
    ours_curve: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    dopamine_curves: dict[tuple[str, str], list[float]] = dataclasses.field(default_factory=dict)

    def markdown(self) -> str:
        lines = ["| game | runs | evaluation: agent step | score: mean (range) | "
                 "human-normalized | training return: iteration | return: mean (range) | "
                 "human-normalized |", "|---|---|---|---|---|---|---|---|", *self.per_game]
        if self.aggregates:
            lines += ["", "| agent | scores | runs x games | IQM [95% CI] | median [95% CI] | "
                          "mean [95% CI] | optimality gap [95% CI] |",
                      "|---|---|---|---|---|---|---|", *self.aggregates]
        lines += [""] + [f"Note: {note}" for note in self.notes]
        return "\n".join(lines).rstrip()


def _normalized_range(game: str, values: list[float]) -> str:
    """The human-normalized values' mean (range); '-' for a game without human scores."""
    return (_range([human_normalized(game, v) for v in values], 3) if game in RANDOM_HUMAN
            else "-")


def _per_game_cells(game: str, result: tuple[int, list[float]] | None) -> str:
    """Three cells of the per-game table from (agent step or iteration, values): that step, the
    values' mean (range) and their human-normalized mean (range); '-' in each where there is
    none."""
    if result is None:
        return "- | - | -"
    at, values = result
    return f"{at} | {_range(values, 1)} | {_normalized_range(game, values)}"


def _per_game_row(game: str, members: list[SuiteRun],
                  evaluation: tuple[int, list[float]] | None,
                  returns: dict[int, dict[int, float]], iteration: int | None) -> str:
    """A row of the per-game table: the game, its runs (members), their scores at the last
    evaluation step they all reached (evaluation: that step and the scores) and their training
    returns in the last iteration every run of the suite completed."""
    training = (None if iteration is None
                else (iteration, [returns[id(run)][iteration] for run in members]))
    return (f"| {game} | {len(members)} | {_per_game_cells(game, evaluation)} | "
            f"{_per_game_cells(game, training)} |")


def _training_returns(runs: list[SuiteRun], notes: list[str]
                      ) -> tuple[dict[int, dict[int, float]], list[int]]:
    """Each run's training return per iteration (keyed by id(run)), and the iterations every
    run completed. Without them (a run lacks episodes.csv, or no iteration is shared by every
    run) a note says why."""
    without = [run.run.name for run in runs if run.episodes is None]
    if without:
        notes.append(f"no {EPISODES} in {', '.join(without)} (runs made before training games "
                     f"were recorded): evaluation scores only, no training returns or Dopamine "
                     f"comparison")
    returns = {} if without else {id(run): iteration_returns(run.episodes, run.steps_reached)
                                  for run in runs}
    shared = sorted(set.intersection(*(set(r) for r in returns.values()))) if returns else []
    if returns and not shared:
        notes.append(f"no iteration of {DOPAMINE_ITERATION_STEPS:,} agent steps completed by "
                     f"every run: no training returns or Dopamine comparison yet")
    return returns, shared


def _final_evaluations(by_game: dict[str, list[SuiteRun]]
                       ) -> dict[str, tuple[int, list[float]]]:
    """Game -> (the last evaluation step all its runs reached, their scores there, in by_game's
    order); a game whose runs share no evaluation step is left out."""
    evaluations = {}
    for game, members in sorted(by_game.items()):
        curves = [{step: score for _, step, score in run.run.rows} for run in members]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        if common:
            evaluations[game] = (common[-1], [c[common[-1]] for c in curves])
    return evaluations


def _aggregate_row(agent: str, what: str, runs_x_games: str, matrix: np.ndarray,
                   reps: int) -> str:
    """A row of the aggregate table: the AGGREGATES of a (runs, games) matrix of normalized
    scores, each with its 95% interval."""
    points, lows, highs = interval_estimates(matrix, reps=reps)
    return (f"| {agent} | {what} | {runs_x_games} | "
            + " | ".join(_estimate(*x) for x in zip(points, lows, highs)) + " |")


def _training_matrix(returns: dict[int, dict[int, float]], runs_of: dict[str, list[SuiteRun]],
                     iteration: int) -> np.ndarray:
    """(runs, games) human-normalized training returns at an iteration: column g holds those of
    the runs runs_of[g] (as many runs of each game)."""
    games = list(runs_of)
    return normalized_matrix({g: [returns[id(run)][iteration] for run in runs_of[g]]
                              for g in games}, games)


def _our_rows(runs: list[SuiteRun], aggregated: dict[str, list[SuiteRun]],
              evaluations: dict[str, tuple[int, list[float]]],
              returns: dict[int, dict[int, float]], iteration: int | None, reps: int) -> list[str]:
    """Our aggregate rows over aggregated[g], the first k runs of each game g (evaluations[g]
    has the scores of all its runs, in the same order), labelled by the suite's flags: the
    training returns of the iteration (where there is one), then the final evaluation's
    scores."""
    games = list(aggregated)
    k = len(aggregated[games[0]])
    with_settings = [run for run in runs if run.run.settings is not None]
    label = f"ours ({_flags(suite_settings(with_settings[0]))})" if with_settings else "ours"
    shape = f"{k} x {len(games)}"
    rows = []
    if iteration is not None:
        rows.append(_aggregate_row(label, f"training return, {_iteration(iteration)}", shape,
                                   _training_matrix(returns, aggregated, iteration), reps))
    steps = {evaluations[g][0] for g in games}
    at = f"agent step {steps.pop()}" if len(steps) == 1 else "each game's last shared step"
    rows.append(_aggregate_row(label, f"final evaluation ({at})", shape, normalized_matrix(
        {g: evaluations[g][1][:k] for g in games}, games), reps))
    return rows


def _dopamine_matrix(dopamine: dict, games: list[str], network: str, agent: str,
                     iteration: int) -> np.ndarray | None:
    """(runs, games) human-normalized training returns of a Dopamine agent at an iteration, as
    many runs of each game as the game with the fewest has; None where the table lacks any."""
    values = dopamine_values(dopamine, games, network, agent, iteration)
    if values is None:
        return None
    n = min(len(v) for v in values.values())
    return normalized_matrix({g: v[:n] for g, v in values.items()}, games)


def _dopamine_games(dopamine: dict, games: list[str], notes: list[str]) -> list[str]:
    """The games that any of Dopamine's agents played; a note names the others."""
    compared = [g for g in games if any((g, n, a) in dopamine for n, a in
                                        dopamine_agents(dopamine))]
    missing = [g for g in games if g not in compared]
    if missing:
        notes.append(f"Dopamine's returns (atari_dqn/data/dopamine_returns.csv) lack "
                     f"{', '.join(missing)}: its agents are aggregated over the other games")
    return compared


def _dopamine_rows(dopamine: dict, games: list[str], iteration: int, reps: int) -> list[str]:
    """The aggregate rows of Dopamine's agents at an iteration, on these games: one for each
    agent the table has there (none without games)."""
    rows = []
    for network, agent in dopamine_agents(dopamine) if games else []:
        matrix = _dopamine_matrix(dopamine, games, network, agent, iteration)
        if matrix is not None:
            rows.append(_aggregate_row(dopamine_label(network, agent),
                                       f"training return, {_iteration(iteration)}",
                                       f"{len(matrix)} x {len(games)}", matrix, reps))
    return rows


def _our_curve(returns: dict[int, dict[int, float]], runs_of: dict[str, list[SuiteRun]],
               iterations: list[int], reps: int) -> list[tuple[float, float, float]]:
    """Per iteration, the IQM of our normalized training returns (runs_of[g] for each game g)
    with its 95% interval: (IQM, low, high)."""
    iqm = lambda scores: np.array([aggregate_point(scores)[0]])  # noqa: E731
    curve = []
    for i in iterations:
        point, low, high = interval_estimates(_training_matrix(returns, runs_of, i), iqm,
                                              reps=reps)
        curve.append((float(point[0]), float(low[0]), float(high[0])))
    return curve


def _dopamine_curves(dopamine: dict, games: list[str], iterations: list[int]
                     ) -> dict[tuple[str, str], list[float]]:
    """(network, agent) -> the IQM of the agent's normalized training returns on these games at
    each iteration; only agents the table has at every one of them (none without games)."""
    curves = {}
    for network, agent in dopamine_agents(dopamine) if games else []:
        matrices = [_dopamine_matrix(dopamine, games, network, agent, i) for i in iterations]
        iqms = [float(aggregate_point(m)[0]) for m in matrices if m is not None]
        if len(iqms) == len(iterations):
            curves[(network, agent)] = iqms
    return curves


def summarise_suite(runs: list[SuiteRun], notes: list[str], dopamine: dict,
                    reps: int = BOOTSTRAP_REPS) -> SuiteSummary:
    """The per-game rows, the aggregates (ours and Dopamine's agents) and the curves."""
    notes = list(notes)
    by_game: dict[str, list[SuiteRun]] = {}
    for run in runs:
        by_game.setdefault(run.game, []).append(run)
    games = sorted(by_game)
    normalized_games = [g for g in games if g in RANDOM_HUMAN]
    unscaled = [g for g in games if g not in RANDOM_HUMAN]
    if unscaled:
        notes.append(f"{', '.join(unscaled)}: not one of the 57 games with human and random "
                     f"scores (atari_dqn/scores.py): raw scores only, left out of the aggregates")
    # Our training returns per run and iteration; the last iteration every run completed.
    returns, shared = _training_returns(runs, notes)
    iteration = shared[-1] if shared else None
    evaluations = _final_evaluations(by_game)
    per_game = [_per_game_row(g, by_game[g], evaluations.get(g), returns, iteration)
                for g in games]
    summary = SuiteSummary(games, normalized_games, per_game, [], notes)
    # Aggregates: a (runs, games) matrix needs as many runs of each game; the first k by seed.
    agg_games = [g for g in normalized_games if g in evaluations]
    if not agg_games:
        if normalized_games:
            notes.append("no evaluation step shared by all runs of a game: no aggregates")
        return summary
    k = min(len(by_game[g]) for g in agg_games)
    if any(len(by_game[g]) > k for g in agg_games):
        notes.append(f"the aggregates take the first {k} seeds of each game (as many runs of "
                     f"each game as the game with the fewest has)")
    aggregated = {g: by_game[g][:k] for g in agg_games}
    summary.aggregates += _our_rows(runs, aggregated, evaluations, returns, iteration, reps)
    if iteration is None:
        notes.append(f"95% stratified-bootstrap intervals: rliable, percentile method, {reps:,} "
                     f"resamples, seed {BOOTSTRAP_SEED}")
        return summary
    # Dopamine's agents at the same iteration, on the same games.
    compared = _dopamine_games(dopamine, agg_games, notes)
    summary.aggregates += _dopamine_rows(dopamine, compared, iteration, reps)
    protocols = {(r.run.settings or {}).get("protocol", "deepmind") for r in runs}
    if protocols != {"machado"}:
        notes.append(f"these runs played --protocol {', '.join(sorted(protocols))}; Dopamine's "
                     f"played Machado et al. 2018's (sticky actions with p = 0.25, no life-loss "
                     f"signal): the games differ, so the comparison is indicative only")
    notes.append(f"95% stratified-bootstrap intervals: rliable, percentile method, {reps:,} "
                 f"resamples, seed {BOOTSTRAP_SEED}; training returns are the mean raw score of "
                 f"the training games (epsilon-greedy) that ended in an iteration, as Dopamine "
                 f"reports them; frames are emulator frames (4 per agent step)")
    # The curves: our IQM (with its interval) and each Dopamine agent's, per shared iteration.
    summary.curve_iterations = shared
    summary.ours_curve = _our_curve(returns, aggregated, shared, reps)
    summary.dopamine_curves = _dopamine_curves(dopamine, compared, shared)
    return summary


def plot_suite(summary: SuiteSummary, png: Path, title: str) -> None:
    """Our IQM of human-normalized training returns per iteration (band: 95% interval) beside
    each Dopamine agent's (solid: Nature CNN, dashed: Impala), against emulator frames."""
    frames = [(i + 1) * DOPAMINE_ITERATION_STEPS * FRAME_SKIP / 1e6
              for i in summary.curve_iterations]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colours = {agent: f"C{i}" for i, agent in enumerate(
        dict.fromkeys(agent for _, agent in summary.dopamine_curves))}
    for (network, agent), curve in summary.dopamine_curves.items():
        ax.plot(frames, curve, color=colours[agent], marker=".",
                linestyle="-" if network == "nature" else "--",
                label=dopamine_label(network, agent), linewidth=1)
    iqm, low, high = (np.array(column) for column in zip(*summary.ours_curve))
    ax.plot(frames, iqm, color="black", marker="o", linewidth=2, label="ours")
    ax.fill_between(frames, low, high, color="black", alpha=0.15)
    ax.set_xlabel("emulator frames (millions) at the end of each iteration "
                  f"({DOPAMINE_ITERATION_STEPS:,} agent steps)")
    ax.set_ylabel("IQM of human-normalized training return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def suite_main(folder: Path, out: Path, force: bool, table_only: bool, reps: int,
               title: str | None) -> int:
    """summary DIR --suite: print the tables, draw the figure (not with --table)."""
    problem = None if table_only else out_problem(out, force)
    if problem:
        raise RunFileError(problem)
    runs, notes = read_suite(folder)
    summary = summarise_suite(runs, notes, dopamine_returns(), reps=reps)
    print(summary.markdown())
    if table_only:
        return 0
    if not summary.curve_iterations:
        print(f"no figure: it draws training returns per iteration of "
              f"{DOPAMINE_ITERATION_STEPS:,} agent steps, and there are none (see the notes)")
        return 0
    plot_suite(summary, out, title or f"{folder.name}: {len(summary.games)} games, "
                                      f"IQM over runs and games")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="summary", description=__doc__.splitlines()[0].rstrip(":"))
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run folders (each with a rewards.txt). A folder without one that "
                             "holds run folders (rewards/offline) stands for the runs in it, so "
                             "rewards/*/ names every run; a run named twice counts once. With "
                             "--suite: one suite folder (python -m atari_dqn.suite's --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the PNG to write (default: summary.png, with --suite suite.png, "
                             "in the working folder); an existing file is refused unless --force")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--title", default=None,
                        help="the figure's title (default: 'evaluation score (whole games, eps "
                             "0.05)'; with --suite, the suite folder's name)")
    parser.add_argument("--arms", action="store_true",
                        help="one curve per arm (runs alike but for the seed): the mean over its "
                             "seeds, the range shaded")
    parser.add_argument("--table", action="store_true",
                        help="print a Markdown table instead of drawing (--out is not written): "
                             "each run's last and best score, and each arm's mean and range at "
                             "the last step its runs all reached (with --suite: its tables)")
    parser.add_argument("--suite", action="store_true",
                        help="a suite of games: per game the mean and range over seeds of the "
                             "final evaluation and of the training return, human-normalized; "
                             "IQM, median, mean and optimality gap over all runs and games with "
                             "95%% bootstrap intervals (rliable), beside Dopamine's agents at "
                             "equal frames; the figure: IQM of the training return per "
                             "iteration (docs/suite.md)")
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS,
                        help="bootstrap resamples of each interval, with --suite "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    out = args.out or Path("suite.png" if args.suite else "summary.png")
    try:
        if args.suite:
            if len(args.runs) != 1 or args.arms:
                raise RunFileError("--suite takes one suite folder, without --arms")
            if args.reps < 1:
                raise RunFileError(f"--reps must be a positive integer, got {args.reps}")
            return suite_main(args.runs[0], out, args.force, args.table, args.reps, args.title)
        problem = None if args.table else out_problem(out, args.force)
        if problem:
            raise RunFileError(problem)
        runs = [read_run(folder) for folder in run_folders(args.runs)]
        if args.table:
            print(table(arms_of(runs)))
            return 0
        arms = (arms_of(runs) if args.arms
                else {label: [run] for label, run in zip(labels(runs), runs)})
        plot_arms(arms, out, title=args.title or "evaluation score (whole games, eps 0.05)")
    except (RunFileError, DiskError) as e:  # DiskError: the figure could not be written
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_tool(main)
