"""Run a suite: every (game, seed) of some games as an ordinary run, several at a time.

    python -m atari_dqn.suite --games dqn5 --seeds 2 --out suites/dqn5             # 10 runs
    python -m atari_dqn.suite --games Breakout,Pong --seeds 3 --out suites/bp --prioritized  # 6

Each (game, seed) is `python main.py --env GAME --seed S --out DIR/GAME-seedS --steps STEPS
[the other flags]` in a child process, K at a time; the flags this command does not know are
main.py's, passed to every run. The suite folder DIR holds:

    suite.json                 the suite's settings (games, seeds, steps, protocol, flags, and the
                               learning settings they make), compared when it is run again
    <Game>-seed<S>/            one run folder per (game, seed), exactly as main.py makes it
    logs/<Game>-seed<S>.log    that run's output; each start appends to it

Running the same command again continues the suite: a run whose checkpoint is at --steps (main.py
writes it after the last evaluation, with final_model.pt) is skipped, a run stopped earlier is
resumed (`main.py --resume`), a missing one is started. More games or seeds than suite.json
records add runs (the record grows); a larger --steps trains every run longer (each is resumed
with the larger --steps, as main.py allows); other settings than the record's are refused. A
command that names fewer games or seeds works on those and leaves the others as they are.

Ctrl-C or SIGTERM is passed on to every run, once: each finishes its step (and any evaluation),
writes a checkpoint and exits 130/143; the suite waits for them, starts nothing new, and exits
130/143. A second signal is passed on too, and stops the runs at once. The runs are in process
groups of their own, so a Ctrl-C in the terminal reaches them only through the suite, and on
Linux each gets SIGTERM if the suite itself dies (PR_SET_PDEATHSIG).

Every check (games, flags, suite.json, each existing run's checkpoint and settings, the
machine) is made before anything is created or started: a problem is one line, `suite: error:
...`, and exit status 2. A run that fails (main.py's exit 2, a crash) is reported with the last
line of its log, the others go on, and the suite exits with status 1 at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from atari_dqn.cli import OneLineParser
from atari_dqn.config import (RESUME_MAY_CHANGE, Config, ConfigError, flag_of, saved_settings)
from atari_dqn.flags import build_parser as main_parser
from atari_dqn.flags import config_from_flags, integer_flag
from atari_dqn.scores import GAME_SETS

PROG = "suite"
SUITE_FILE = "suite.json"
SUITE_VERSION = 1
LOGS = "logs"
# Settings the suite sets itself for each run, and the suite flag that does.
OWNED = {"env_id": "--games", "seed": "--seeds", "out_dir": "--out",
         "resume": "the suite (it resumes its runs itself)",
         "offline": "no suite (an offline run learns from one game's data)"}
# What is not part of a suite's identity: what each run sets itself, and what a resume may change
# (--steps is recorded on its own; --threads, --device, --compile, ... may differ between calls).
NOT_A_SETTING = {"env_id", "seed", *RESUME_MAY_CHANGE}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED_CODES = {128 + s for s in STOP_SIGNALS} | {-s for s in STOP_SIGNALS}
POLL_SECONDS = 0.2  # how often the running children are checked for their end
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SuiteError(ValueError):
    """The suite cannot start (bad input, another suite's folder): one line, exit status 2."""


@dataclass(frozen=True)
class Plan:
    """One (game, seed) of the suite and what to do with it."""
    game: str
    seed: int
    folder: Path
    action: str            # "start", "resume" or "done"
    steps_made: int = 0    # agent steps its checkpoint holds (0 for a run to start)
    argv: tuple[str, ...] = ()  # main.py's arguments ("done": none)

    @property
    def name(self) -> str:
        return self.folder.name


def run_name(game: str, seed: int) -> str:
    return f"{game}-seed{seed}"


# --- main.py -------------------------------------------------------------------------------

def find_main() -> Path:
    """main.py, at the project's root beside the atari_dqn package (an editable install)."""
    path = Path(__file__).resolve().parent.parent / "main.py"
    if not path.is_file():
        raise SuiteError(f"no main.py at {path}, beside the atari_dqn package: the suite runs "
                         f"the project's main.py (install the project with pip install -e .)")
    return path


def parse_flags(argv: list[str]) -> dict[str, Any]:
    """main.py's parser on argv: the flags typed (flags.build_parser), a usage error a
    SuiteError instead of main.py's exit."""
    parser = main_parser()

    def error(message: str) -> NoReturn:
        raise SuiteError(f"main.py flags: {message}")

    parser.error = error  # argparse reports every usage error through self.error
    return vars(parser.parse_args(argv))


def has_setting(name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(Config))


# --- the suite's settings -----------------------------------------------------------------

def suite_games(text: str) -> list[str]:
    """--games: a set of scores.GAME_SETS, or comma-separated game names, each resolved as
    main.py's --env resolves it, to its short name (envs.atari.game_name)."""
    from atari_dqn.envs.atari import game_name

    if text in GAME_SETS:
        return list(GAME_SETS[text])
    games: list[str] = []
    for name in text.split(","):
        name = name.strip()
        if not name:
            raise SuiteError(f"--games {text!r}: an empty game name")
        try:
            game = game_name(name)
        except ConfigError:
            raise SuiteError(f"--games: unknown Atari game {name!r} (give names such as "
                             f"Breakout,Pong, or one of the sets {', '.join(GAME_SETS)})") from None
        if game in games:
            raise SuiteError(f"--games names {game} twice")
        games.append(game)
    return games


def learning_settings(config: Config) -> dict[str, Any]:
    """What makes two runs of one game and seed the same run: the Config but for NOT_A_SETTING."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_A_SETTING}


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'--flag A there, B here' for each learning setting that differs (settings one side
    predates: what the run did then, config.saved_settings)."""
    a, b = saved_settings(recorded), saved_settings(current)
    out = []
    for name in sorted(a.keys() & b.keys()):
        if name not in NOT_A_SETTING and a[name] != b[name]:
            label = flag_of(name) if has_setting(name) else name
            out.append(f"{label or name} {a[name]!r} there, {b[name]!r} here")
    return out


def read_record(folder: Path) -> dict[str, Any] | None:
    """DIR/suite.json, checked; None if there is none."""
    path = folder / SUITE_FILE
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(path.read_text())
        kinds = {"games": list, "seeds": int, "steps": int, "protocol": str, "flags": list,
                 "settings": dict}
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        for key, kind in kinds.items():
            if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                raise ValueError(f"its {key!r} is missing or not a {kind.__name__}")
        if not all(isinstance(g, str) for g in record["games"]) or record["seeds"] < 1 \
                or record["steps"] < 1:
            raise ValueError("its games, seeds or steps are not valid")
    except OSError as e:
        raise SuiteError(f"{path}: unreadable ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError too
        raise SuiteError(f"{path} is not a suite's record ({e}); choose another --out") from None
    return record


def check_suite_folder(folder: Path, record: dict | None) -> None:
    """DIR may hold a suite: it is absent, empty, or has a suite.json."""
    if not os.path.lexists(folder) or record is not None:
        return
    if not folder.is_dir():
        raise SuiteError(f"--out {folder} exists and is not a folder")
    contents = sorted(p.name for p in folder.iterdir())
    if contents:
        shown = ", ".join(contents[:5]) + (f" and {len(contents) - 5} more"
                                           if len(contents) > 5 else "")
        raise SuiteError(f"--out {folder} holds {shown} but no {SUITE_FILE}: not a suite; "
                         f"choose another folder")


class SuiteLock:
    """An exclusive flock on the suite folder itself while the suite runs: one suite at a time
    works on a folder (a folder can be locked without writing anything in it)."""

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise SuiteError(f"{folder} is in use by another suite; wait for it to stop") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- the runs ------------------------------------------------------------------------------

def plan_run(game: str, seed: int, folder: Path, steps: int, flags: list[str],
             settings: dict[str, Any]) -> tuple[Plan, Config | None]:
    """What to do with one (game, seed), checked as main.py would check it (its Config built by
    flags.config_from_flags from exactly the arguments the child will get), with nothing
    changed. A folder that cannot be started or resumed is a SuiteError naming it."""
    from atari_dqn.run.checkpoint import check_new_run_dir, saved_run
    from atari_dqn.envs.atari import game_name

    name = run_name(game, seed)
    try:
        check_new_run_dir(folder)  # absent, empty, or what a trainer killed at its start left
        fresh = True
    except ConfigError:
        fresh = False
    try:
        if fresh:
            argv = ["--env", game, "--seed", str(seed), "--out", str(folder),
                    "--steps", str(steps), *flags]
            return Plan(game, seed, folder, "start", 0, tuple(argv)), \
                config_from_flags(parse_flags(argv))
        saved, made = saved_run(folder)  # the checkpoint (or config.json at step 0), checked
        saved = saved_settings(saved)
        if game_name(saved["env_id"]) != game or saved["seed"] != seed:
            raise SuiteError(f"{folder} holds a run of {saved['env_id']} seed {saved['seed']}, "
                             f"not {game} seed {seed}")
        changed = differences(saved, settings)
        if changed:
            raise SuiteError(f"{folder} was made with other settings than the suite's: "
                             f"{'; '.join(changed)}")
        if made >= steps:
            return Plan(game, seed, folder, "done", made), None
        argv = ["--resume", str(folder), "--steps", str(steps), *flags]
        return Plan(game, seed, folder, "resume", made, tuple(argv)), \
            config_from_flags(parse_flags(argv))
    except ConfigError as e:
        raise SuiteError(f"{name}: {e}") from None


def default_parallel(config: Config, runs: int) -> tuple[int, str]:
    """(K, why): the runs this machine can hold at once: the cores this process may use
    divided by each run's --threads, the runs whose full replay memory, networks and games fit
    in the RAM available now, and the runs to do."""
    from atari_dqn.run import machine

    cores = max(1, machine.usable_cores() // config.threads)
    per_run = (config.memory_capacity_transitions * machine.MEMORY_BYTES_PER_TRANSITION
               + machine.learner_bytes(config) + machine.games_here(config) * machine.GAME_BYTES)
    ram = machine.available_ram_bytes()
    fit = max(1, ram // per_run)
    k = max(1, min(cores, fit, runs))
    return k, (f"{machine.usable_cores()} cores / --threads {config.threads}, {fit} runs of "
               f"about {per_run / 1e9:.1f} GB in {ram / 1e9:.1f} GB of RAM, {runs} to do")


# --- running -------------------------------------------------------------------------------

def _parent_death_signal() -> Any:
    """A function for Popen's preexec_fn: on Linux, SIGTERM to the child when the suite dies,
    so that a suite killed outright (SIGKILL) leaves no trainer behind; each checkpoints."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the suite died before prctl
            os.kill(os.getpid(), signal.SIGTERM)
    return in_child


@dataclass
class Child:
    plan: Plan
    process: subprocess.Popen
    log: Path
    started: float


def last_line(log: Path) -> str:
    """The log's last non-empty line (a progress bar's last state counts as a line)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def say(text: str) -> None:
    print(text, flush=True)


def say_ended(child: Child, code: int) -> None:
    """One line on a child that ended with exit status `code`: finished, stopped by a signal or
    failed, after how long; the last two with its log's last line."""
    took = datetime.timedelta(seconds=round(time.monotonic() - child.started))
    if code == 0:
        say(f"{child.plan.name}: finished after {took}")
    elif code in STOPPED_CODES:
        name = signal.Signals(code - 128 if code > 0 else -code).name
        say(f"{child.plan.name}: stopped by {name} (exit {code}) after {took}: "
            f"{last_line(child.log)}")
    else:
        say(f"{child.plan.name}: FAILED (exit {code}) after {took}: {last_line(child.log)}")


def run_children(plans: list[Plan], parallel: int, main_py: Path, logs: Path) -> tuple[
        int | None, dict[str, int]]:
    """Run the plans' children, `parallel` at a time. Returns (the signal that stopped the
    suite or None, run name -> exit status of every child that ran)."""
    state: dict[str, Any] = {"signum": None}
    running: list[Child] = []
    codes: dict[str, int] = {}
    preexec = _parent_death_signal()

    def forward(signum: int, frame: Any) -> None:
        if state["signum"] is None:
            state["signum"] = signum
        for child in running:  # each stops after a checkpoint (a second signal: at once)
            child.process.send_signal(signum)

    def start(plan: Plan) -> Child:
        log = logs / f"{plan.name}.log"
        argv = [sys.executable, str(main_py), *plan.argv]
        with log.open("ab") as f:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"--- {stamp} suite: {shlex.join(argv)}\n".encode())
            f.flush()
            process = subprocess.Popen(argv, cwd=main_py.parent, stdin=subprocess.DEVNULL,
                                       stdout=f, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=preexec)
        child = Child(plan, process, log, time.monotonic())
        running.append(child)
        if state["signum"] is not None:  # a signal that came while it was being started
            process.send_signal(state["signum"])
        what = ("new run" if plan.action == "start"
                else f"resumed at agent step {plan.steps_made}")
        say(f"{plan.name}: started ({what}, pid {process.pid}); log {log}")
        return child

    old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        queue = list(plans)
        while running or (queue and state["signum"] is None):
            while queue and len(running) < parallel and state["signum"] is None:
                start(queue.pop(0))
            time.sleep(POLL_SECONDS)  # a signal interrupts it at once (and the handler runs)
            for child in list(running):
                code = child.process.poll()
                if code is not None:
                    running.remove(child)
                    codes[child.plan.name] = code
                    say_ended(child, code)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return state["signum"], codes


# --- the command ---------------------------------------------------------------------------

def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG, allow_abbrev=False,
        usage="python -m atari_dqn.suite --games LIST|SET --seeds N [--steps S] "
              "[--protocol P] [--parallel K] --out DIR [main.py flags ...]",
        description="Run every (game, seed) as an ordinary run folder DIR/<Game>-seed<S>, K at "
                    "a time; run it again to continue. Flags it does not know are main.py's "
                    "(python main.py --help), passed to every run.")
    sets = ", ".join(f"{name} ({len(games)} games)" for name, games in GAME_SETS.items())
    parser.add_argument("--games", required=True,
                        help=f"comma-separated games as main.py's --env takes them "
                             f"(Breakout,Pong), or a set: {sets}")
    parser.add_argument("--seeds", required=True, type=int,
                        help="runs per game: seeds 0 to N-1")
    parser.add_argument("--steps", default=None,
                        help="agent steps per run (default: main.py's --steps for a new suite, "
                             "the recorded steps for an existing one; a larger value trains "
                             "every run longer)")
    parser.add_argument("--protocol", default=None,
                        help="main.py's --protocol, recorded with the suite (default: main.py's "
                             "for a new suite, the recorded one for an existing one)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="runs at a time (default: what the machine holds: cores / "
                             "--threads, runs whose replay memory fits in the RAM available, "
                             "runs to do)")
    parser.add_argument("--out", required=True, type=Path, help="the suite folder DIR")
    return parser


@dataclass(frozen=True)
class Prepared:
    """A suite checked and planned, before anything is created or started."""
    folder: Path
    record: dict[str, Any]
    plans: list[Plan]
    parallel: int
    why_parallel: str
    main_py: Path
    lock: SuiteLock | None
    unnamed: list[str]


def prepare(argv: list[str]) -> Prepared:
    """Every check of the suite, its record and its runs; nothing is created or started (the
    suite folder, if it exists, is locked)."""
    args, flags = build_parser().parse_known_args(argv)
    if args.seeds < 1:
        raise SuiteError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.parallel is not None and args.parallel < 1:
        raise SuiteError(f"--parallel must be a positive integer, got {args.parallel}")
    main_py = find_main()
    if args.steps is not None:
        try:
            steps = integer_flag(args.steps)
        except (ValueError, argparse.ArgumentTypeError):
            raise SuiteError(f"--steps: not an integer: {args.steps!r}") from None
        if steps < 1:
            raise SuiteError(f"--steps must be a positive integer, got {steps}")
    games = suite_games(args.games)
    given = parse_flags(flags)
    for name in given:
        if name in OWNED:
            raise SuiteError(f"{flag_of(name)} is set by {OWNED[name]}, not given to each run")
    if args.protocol is not None and not has_setting("protocol"):
        raise SuiteError("--protocol: this main.py has no --protocol flag (its runs play "
                         "DeepMind's protocol only)")
    folder = args.out.resolve()
    record = read_record(folder) if folder.is_dir() else None
    check_suite_folder(folder, record)
    lock = SuiteLock(folder) if folder.is_dir() else None
    try:
        return _plan(args, flags, given, games, folder, record, main_py, lock,
                     steps if args.steps is not None else None)
    except BaseException:
        if lock is not None:
            lock.close()
        raise


def _steps_and_protocol(steps: int | None, protocol: str | None, record: dict | None,
                        folder: Path) -> tuple[int | None, str | None]:
    """The --steps and --protocol of the suite's runs: as given, else an existing suite's
    recorded ones (None: main.py's default). Fewer steps or another protocol than the record's
    is a SuiteError: a suite's runs are not shortened, and they all play one protocol."""
    if record is None:
        return steps, protocol
    if steps is not None and steps < record["steps"]:
        raise SuiteError(f"{folder} is a suite of {record['steps']} agent steps a run; "
                         f"--steps {steps} is fewer (a suite's runs are not shortened)")
    if steps is None:
        steps = record["steps"]
    protocol = protocol or record["protocol"]
    if protocol != record["protocol"]:
        raise SuiteError(f"{folder} is a suite of --protocol {record['protocol']}, not "
                         f"{protocol}; choose another --out")
    return steps, protocol


def _parallel(given: int | None, configs: list[Config], todo: int) -> tuple[int, str]:
    """(K, why): --parallel where given; else as many of the `todo` runs to start or resume as
    the machine holds, judged by the first of their configs; 1 where there are none."""
    if given is not None:
        return given, "--parallel"
    if configs:
        return default_parallel(configs[0], todo)
    return 1, "nothing to do"


def _plan(args: Any, flags: list[str], given: dict[str, Any], games: list[str], folder: Path,
          record: dict | None, main_py: Path, lock: SuiteLock | None,
          steps: int | None) -> Prepared:
    """The rest of prepare, after its own checks: the steps, protocol and learning settings
    against the suite's record, then each run, then the machine; returns the plan. Nothing is
    created or started."""
    steps, protocol = _steps_and_protocol(steps, args.protocol, record, folder)
    protocol_flags = ["--protocol", protocol] if protocol and has_setting("protocol") else []
    threads = [] if "threads" in given else ["--threads", "1"]  # runs side by side
    run_flags = [*protocol_flags, *flags, *threads]
    # The suite's learning settings: those of its first run, as main.py makes them.
    try:
        first = config_from_flags(parse_flags([
            "--env", games[0], "--seed", "0", "--out", str(folder / run_name(games[0], 0)),
            *([] if steps is None else ["--steps", str(steps)]), *run_flags]))
    except ConfigError as e:
        raise SuiteError(str(e)) from None
    steps = first.total_steps
    protocol = getattr(first, "protocol", "deepmind")  # before --protocol: DeepMind's only
    settings = learning_settings(first)
    if record is not None:
        changed = differences(record["settings"], settings)
        if changed:
            raise SuiteError(f"{folder / SUITE_FILE} records another suite: {'; '.join(changed)}"
                             f"; give its flags ({shlex.join(record['flags']) or 'none'}) or "
                             f"choose another --out")
    plans, configs = [], []
    for seed in range(args.seeds):  # seed 0 of every game first: partial results cover all
        for game in games:
            plan, config = plan_run(game, seed, folder / run_name(game, seed), steps, run_flags,
                                    settings)
            plans.append(plan)
            if config is not None:
                configs.append(config)
    if configs:
        from atari_dqn.run.machine import check_machine

        try:
            check_machine(configs[0])  # the runs differ only in game, seed and folder
        except ConfigError as e:
            raise SuiteError(str(e)) from None
    todo = [plan for plan in plans if plan.action != "done"]
    parallel, why = _parallel(args.parallel, configs, len(todo))
    old_games = record["games"] if record else []
    all_games = old_games + [g for g in games if g not in old_games]
    all_seeds = max(args.seeds, record["seeds"] if record else 0)
    named = {plan.name for plan in plans}
    unnamed = [run_name(g, s) for s in range(all_seeds) for g in all_games
               if run_name(g, s) not in named]
    new_record = {"version": SUITE_VERSION, "games": all_games, "seeds": all_seeds,
                  "steps": steps, "protocol": protocol, "flags": flags, "settings": settings}
    return Prepared(folder, new_record, plans, parallel, why, main_py, lock, unnamed)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        prepared = prepare(argv)
    except SuiteError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    from atari_dqn.run.files import DiskError, atomic_write_text

    folder, plans, record = prepared.folder, prepared.plans, prepared.record
    todo = [plan for plan in plans if plan.action != "done"]
    lock = prepared.lock
    try:
        counts = {a: sum(p.action == a for p in plans) for a in ("done", "resume", "start")}
        say(f"suite {folder}: {len(plans)} runs ({len(plans) // len(set(p.game for p in plans))}"
            f" seeds x {len(set(p.game for p in plans))} games, {record['steps']} agent steps "
            f"each): {counts['done']} finished, {counts['resume']} to resume, {counts['start']} "
            f"to start" + (f"; {prepared.parallel} at a time ({prepared.why_parallel})"
                           if todo else ""))
        if prepared.unnamed:
            say(f"note: the suite also has {', '.join(prepared.unnamed)}, not named here: left "
                f"as they are")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if lock is None:
                lock = SuiteLock(folder)
            text = json.dumps(record, indent=2) + "\n"
            if read_record(folder) != json.loads(text):  # rewritten only when it changes
                atomic_write_text(folder / SUITE_FILE, text)
            (folder / LOGS).mkdir(exist_ok=True)
        except OSError as e:
            raise DiskError(folder, e) from None
        if not todo:
            say(f"suite {folder}: every run is finished; nothing to do")
            return 0
        signum, codes = run_children(todo, prepared.parallel, prepared.main_py, folder / LOGS)
    except SuiteError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except DiskError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if lock is not None:
            lock.close()
    finished = counts["done"] + sum(code == 0 for code in codes.values())
    failed = [name for name, code in codes.items() if code != 0 and code not in STOPPED_CODES]
    stopped = len(plans) - finished - len(failed)
    line = f"suite {folder}: " + (f"stopped by {signal.Signals(signum).name}: "
                                  if signum is not None else "")
    line += f"{finished} of {len(plans)} runs finished"
    if failed:
        line += f", {len(failed)} failed ({', '.join(failed)}: see {folder / LOGS})"
    if stopped:
        line += f", {stopped} to continue: run the same command again"
    say(line)
    if signum is not None:
        return 128 + signum
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
