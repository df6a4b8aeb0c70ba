"""The one place that builds Atari environments, for training and for evaluation: one game, or N
games played side by side (TrainEnvs, EvalEnvs), under a Protocol (DEEPMIND or MACHADO,
docs/protocols.md) that says everything in which the two differ.

Every game is gymnasium's AtariPreprocessing on a NoFrameskip game (ALE plays one emulator frame
per call, without ALE's own sticky actions):
  reset: protocol.noop_max > 0: 1..noop_max random no-ops; protocol.fire_on_reset: then FIRE for
         games that wait for it (Breakout, ...). DEEPMIND does both, MACHADO neither.
  step:  the action repeated for FRAME_SKIP emulator frames, observation = pixel-wise max of the
         last two frames, grayscale, resized to 84x84 (uint8). With
         protocol.sticky_action_probability p > 0 (MACHADO: 0.25), at every emulator frame the
         previous frame's action is played instead of the one asked with probability p
         (StickyActions, below).
Training and evaluation differ in what an episode is:
  training:   DEEPMIND (protocol.life_loss_ends_episode): one life. A lost life returns
              terminated=True so the learner sees it as the end of the episode, but reset() then
              only plays a no-op (and FIRE) unless the real game is over. MACHADO: the whole
              game. info["game_over"] says whether the real game ended, under both. Games are cut
              after TRAIN_MAX_FRAMES.
  evaluation: a whole game (all lives), cut after a caller-chosen number of agent steps.
Observations are single 84x84 uint8 frames in both. Frames are stacked into states by one rule,
the replay memory's (ReplayMemory.state(): the last STACK frames of the episode, padded at its
start by repeating its first frame), in training and in evaluation alike (run/evaluate.py).
Rewards are left raw here: the learner clips them with learning_reward(), scores use them raw.
AtariPreprocessing's own terminal_on_life_loss is not used: it fully resets the game at a lost
life, which is not what DeepMind did.

N games side by side are N of these same envs, each stepped by the same code as a lone one, so
row i is exactly a lone env reset with seed game_seeds(seed, N)[i] (game 0: seed itself) and
given row i's actions. TrainEnvs resets a training game in the step that ends its episode and
returns both its last frame and the next episode's first; EvalEnvs plays each game once, to its
end. Training games can step in child processes (processes=P): ale-py's act() holds the GIL, so
threads would not run emulators at the same time; one that dies (killed, out of memory) is
restarted and replays its games to where they were, exactly. snapshot()/restore() save a training
game (or all N) exactly, for resume.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing

from atari_dqn.config import FRAME_SKIP, SCREEN_SIZE, STACK, ConfigError, RunError  # noqa: F401

gym.register_envs(ale_py)

TRAIN_MAX_FRAMES = 108_000  # 30 minutes of play at 60 Hz = 27,000 agent steps, either protocol
NOOP = 0  # index of NOOP in every game's minimal action set (ALE lists it first)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How games are played and what a training episode is: the choices in which DeepMind's
    protocol (Mnih et al. 2015) and Machado et al. 2018's (as Dopamine plays it) differ. The rest
    is shared: frame skip 4 with a max over the last two frames, 84x84 grayscale, the minimal
    action set, rewards clipped to their sign for learning (learning_rewards), training games cut
    at TRAIN_MAX_FRAMES, evaluation games (whole games) at --eval-max-steps. docs/protocols.md
    has the table and the sources."""

    name: str
    sticky_action_probability: float  # per emulator frame: the previous frame's action is played
    #                                   instead of the one asked (0: never; StickyActions)
    noop_max: int  # a real reset plays 1..noop_max random no-ops (0: none)
    fire_on_reset: bool  # press FIRE after every reset, in games that have a FIRE action
    life_loss_ends_episode: bool  # training: a lost life is terminal for the learner (EpisodicLife)


DEEPMIND = Protocol("deepmind", sticky_action_probability=0.0, noop_max=30, fire_on_reset=True,
                    life_loss_ends_episode=True)
MACHADO = Protocol("machado", sticky_action_probability=0.25, noop_max=0, fire_on_reset=False,
                   life_loss_ends_episode=False)
# By the names of --protocol (config.PROTOCOL_NAMES: config.py imports no environment code).
PROTOCOLS = {protocol.name: protocol for protocol in (DEEPMIND, MACHADO)}


def _atari_ids() -> dict[str, str]:
    """Lower-case short game name -> its NoFrameskip-v4 id, for every ALE game registered."""
    ids = {}
    for env_id, spec in gym.registry.items():
        if env_id.endswith("NoFrameskip-v4") and "ale_py" in str(spec.entry_point):
            ids[env_id[: -len("NoFrameskip-v4")].lower()] = env_id
    return ids


def resolve_env_id(name: str) -> str:
    """'Breakout' -> 'BreakoutNoFrameskip-v4'; a registered ALE id is returned as it is."""
    spec = gym.registry.get(name)
    if spec is not None and "ale_py" in str(spec.entry_point):
        return name
    short = _atari_ids()
    if name.lower() in short:
        return short[name.lower()]
    raise ConfigError(f"--env: unknown Atari game {name!r} (try a name such as Breakout or Pong, "
                      f"or an id such as ALE/Breakout-v5)")


def game_name(name: str) -> str:
    """A file-name friendly game name: 'ALE/Breakout-v5' -> 'Breakout'."""
    env_id = resolve_env_id(name)
    return env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "")


def learning_reward(reward: float) -> float:
    """The reward the learner sees: clipped to its sign (DeepMind), so every game has one scale."""
    return float(np.sign(reward))


def learning_rewards(rewards: np.ndarray) -> np.ndarray:
    """learning_reward() of every row: (N,) float32, as the replay memory's append_batch takes."""
    return np.sign(rewards).astype(np.float32)


class StickyActions(gym.Wrapper):
    """Sticky actions (Machado et al. 2018, section 5), below the frame skip: at every emulator
    frame, with probability p the previous frame's action is played again instead of the one
    asked; after a reset the previous action is NOOP. This is exactly what ALE's
    repeat_action_probability does (StellaEnvironment::act), drawn here from the game's own
    numpy RNG (seeded by reset(seed=...)) instead of ALE's.

    Why not ALE's own: ALE keeps the last action it played outside the state cloneState() saves
    (ale-py 0.12.1, measured: two ALEs that last played different actions, restored to one
    cloned state with its RNG, go on differently in about a quarter of the cases), so a game
    could not be saved and restored exactly (snapshot()/restore(), for resume and for restarted
    game processes). Here the RNG is the one snapshot() already saves, and the last action is
    this wrapper's `last`, saved with it."""

    def __init__(self, env: gym.Env, probability: float) -> None:
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[NOOP] != "NOOP":
            raise ValueError(f"StickyActions: action {NOOP} of {env.spec.id} is not NOOP")
        self.probability = probability
        self.last = NOOP  # the action the emulator played last

    def reset(self, **kwargs: Any):
        self.last = NOOP  # as ALE's reset does (StellaEnvironment::softReset)
        return self.env.reset(**kwargs)

    def step(self, action: int):
        if self.env.unwrapped.np_random.random() >= self.probability:
            self.last = action
        return self.env.step(self.last)


class FireOnReset(gym.Wrapper):
    """Press FIRE after every reset; games like Breakout wait for it before play starts."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.fire = env.unwrapped.get_action_meanings().index("FIRE")

    def reset(self, **kwargs: Any):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self.fire)
        if terminated or truncated:  # never seen in practice; start over rather than loop
            obs, info = self.env.reset()
        return obs, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the learning episode; reset() restarts the game only when it is over.

    Invariant: game_over is True before the first reset and after any step that ended the real
    game (terminated or truncated), so reset() then does a real reset; otherwise reset() plays
    one no-op step from the current position (a "soft" reset after a lost life).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: int):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        info["game_over"] = self.game_over
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        self.game_over = False
        return obs, info


class WholeGames(gym.Wrapper):
    """A training game whose learning episodes are whole games (protocol.life_loss_ends_episode
    False): adds info["game_over"], as EpisodicLife does, so that the loop reads one flag
    whatever the protocol."""

    def step(self, action: int):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["game_over"] = bool(terminated or truncated)
        return obs, reward, terminated, truncated, info


def _base_env(name: str, protocol: Protocol, *, max_frames: int, render: bool) -> gym.Env:
    env = gym.make(resolve_env_id(name), frameskip=1, repeat_action_probability=0.0,
                   max_num_frames_per_episode=max_frames,
                   render_mode="rgb_array" if render else None)
    if protocol.sticky_action_probability > 0:
        env = StickyActions(env, protocol.sticky_action_probability)
    return AtariPreprocessing(env, noop_max=protocol.noop_max, frame_skip=FRAME_SKIP,
                              screen_size=SCREEN_SIZE, terminal_on_life_loss=False,
                              grayscale_obs=True)


def _with_fire(env: gym.Env, protocol: Protocol) -> gym.Env:
    """FIRE after every reset where the protocol presses it and the game has it."""
    if protocol.fire_on_reset and "FIRE" in env.unwrapped.get_action_meanings():
        return FireOnReset(env)
    return env


def make_train_env(name: str, protocol: Protocol = DEEPMIND) -> gym.Env:
    """A training game of the protocol (DEEPMIND: lost lives end learning episodes; MACHADO:
    whole games), cut after TRAIN_MAX_FRAMES."""
    env = _base_env(name, protocol, max_frames=TRAIN_MAX_FRAMES, render=False)
    return _with_fire(EpisodicLife(env) if protocol.life_loss_ends_episode else WholeGames(env),
                      protocol)


def make_eval_env(name: str, *, max_steps: int, render: bool = False,
                  protocol: Protocol = DEEPMIND) -> gym.Env:
    """Whole games cut after max_steps agent steps; env.render() gives the RGB screen if render."""
    return _with_fire(_base_env(name, protocol, max_frames=max_steps * FRAME_SKIP,
                                render=render), protocol)


# --- exact save and restore of a training environment in mid-episode ---------------------------
# What the next step depends on: the emulator (ALE state incl. its RNG), the env's numpy RNG (the
# number of no-ops at the next real reset; StickyActions' draws), AtariPreprocessing's two-frame
# max buffer, the life counter of EpisodicLife, and the action StickyActions played last (ALE's
# state would not hold it: StickyActions' doc). FireOnReset and WholeGames keep no state.

def snapshot(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue this env's episode exactly; only plain types and bytes."""
    prep, life = _find(env, AtariPreprocessing), _find(env, EpisodicLife)
    sticky = _find(env, StickyActions)
    return {
        "ale": pickle.dumps(env.unwrapped.ale.cloneState(include_rng=True)),
        "np_random": env.unwrapped.np_random.bit_generator.state,
        "obs_buffer": [b.tobytes() for b in prep.obs_buffer],
        "prep_lives": int(prep.lives),
        "prep_game_over": bool(prep.game_over),
        "life_lives": int(life.lives) if life else None,
        "life_game_over": bool(life.game_over) if life else None,
        "sticky_last": int(sticky.last) if sticky else None,
    }


def restore(env: gym.Env, snap: dict[str, Any]) -> None:
    """Put a freshly made env of the same game and protocol into the state snapshot() saw."""
    env.reset(seed=0)  # gymnasium refuses step() before a first reset; everything is overwritten
    # One emulator frame first: a state restored into an emulator that has played no frame since
    # its reset goes on differently in some games (ale-py 0.12.1, 104 games, 4 tries each: Qbert
    # and Tetris every time; after one frame of any action, neither). A machado reset plays no
    # frame (deepmind's FIRE does): without this a resumed machado Qbert game went astray. Yars'
    # Revenge goes astray in a fresh emulator either way (docs/environment.md).
    env.unwrapped.ale.act(ale_py.Action.NOOP)
    env.unwrapped.ale.restoreState(pickle.loads(snap["ale"]))
    env.unwrapped.np_random.bit_generator.state = snap["np_random"]
    prep, life = _find(env, AtariPreprocessing), _find(env, EpisodicLife)
    for buf, raw in zip(prep.obs_buffer, snap["obs_buffer"]):
        buf[...] = np.frombuffer(raw, dtype=buf.dtype).reshape(buf.shape)
    prep.lives, prep.game_over = snap["prep_lives"], snap["prep_game_over"]
    if life is not None:
        life.lives, life.game_over = snap["life_lives"], snap["life_game_over"]
    sticky = _find(env, StickyActions)
    if sticky is not None:
        if snap.get("sticky_last") is None:
            raise ValueError("the snapshot is of a game without sticky actions")
        sticky.last = snap["sticky_last"]


def _find(env: gym.Env, kind: type) -> Any:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None


# --- N training games at once -------------------------------------------------------------------
# Each game is a make_train_env stepped by the same code as a lone env (_Games._step_one), so row i
# of TrainEnvs is exactly a lone make_train_env reset with seed game_seeds(seed, n)[i] and
# given row i's actions: a game's state depends only on its own seed and actions, never on another
# row or on which process steps it.
def action_count(name: str) -> int:
    """The number of actions of a game (its minimal action set, as the envs here use it)."""
    with gym.make(resolve_env_id(name)) as probe:
        return int(probe.action_space.n)


# Threads would not step games at the same time: ale-py 0.12.1's ALEInterface.act holds the GIL
# for the whole emulation (measured: a Python thread makes no progress during a long act() call,
# while it does during hashlib's). Games step in parallel in child processes instead (processes=P).

def game_seeds(seed: int, n: int) -> list[int]:
    """The reset seeds of n games played side by side (TrainEnvs, EvalEnvs). Game 0 gets seed
    itself, so that one game is exactly today's single env reset with reset(seed=seed); game
    i >= 1 gets the first word of numpy's SeedSequence(seed).spawn(n)[i]: independent of game 0,
    and of the per-evaluation seeds (SeedSequence([seed, index]), evaluate.evaluation_seeds)."""
    if seed < 0 or n < 1:
        raise ValueError(f"game_seeds: need seed >= 0 and n >= 1, got seed={seed}, n={n}")
    children = np.random.SeedSequence(seed).spawn(n)
    return [seed] + [int(child.generate_state(1)[0]) for child in children[1:]]


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one step of N games gives; row i is game i, every array has N rows."""

    frames: np.ndarray  # (N, 84, 84) uint8: the observation after the step; the terminal frame
    #                     of rows that ended (what the replay memory's append_batch takes)
    rewards: np.ndarray  # (N,) float64: raw game rewards (learning_reward() clips them)
    terminated: np.ndarray  # (N,) bool: a lost life or the end of the game
    truncated: np.ndarray  # (N,) bool: the game was cut at TRAIN_MAX_FRAMES
    game_over: np.ndarray  # (N,) bool: the real game ended (its score is complete)
    reset_frames: np.ndarray  # (N, 84, 84) uint8: rows that ended were reset in this step: the
    #                           first frame of their next episode; other rows: equal to frames

    @property
    def ended(self) -> np.ndarray:
        """(N,) bool: rows whose learning episode ended (terminated or truncated) and were reset."""
        return self.terminated | self.truncated

    @staticmethod
    def concatenate(parts: list[StepResult]) -> StepResult:
        return StepResult(*(np.concatenate([getattr(part, f.name) for part in parts])
                            for f in dataclasses.fields(StepResult)))


class _Games:
    """Training games stepped one after another in this process."""

    def __init__(self, name: str, seeds: list[int], protocol: Protocol) -> None:
        self.seeds = seeds
        self.envs = [make_train_env(name, protocol) for _ in seeds]

    def reset(self) -> np.ndarray:
        return np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, self.seeds)])

    def step(self, actions: np.ndarray) -> StepResult:
        rows = [self._step_one(env, int(action)) for env, action in zip(self.envs, actions)]
        frames, rewards, terminated, truncated, game_over, reset_frames = zip(*rows)
        return StepResult(np.stack(frames), np.array(rewards, dtype=np.float64),
                          np.array(terminated, dtype=bool), np.array(truncated, dtype=bool),
                          np.array(game_over, dtype=bool), np.stack(reset_frames))

    @staticmethod
    def _step_one(env: gym.Env, action: int) -> tuple:
        """One game's step, exactly as the single-env loop does it: step, and reset on an end."""
        frame, reward, terminated, truncated, info = env.step(action)
        reset_frame = env.reset()[0] if terminated or truncated else frame
        return frame, float(reward), terminated, truncated, info["game_over"], reset_frame

    def replay(self, actions: np.ndarray) -> None:
        """step() with each row of actions (steps, games), the results dropped: games restarted
        in a new process catch up with where they were (TrainEnvs._restart)."""
        for row in actions:
            self.step(row)

    def snapshot(self) -> list[dict[str, Any]]:
        return [snapshot(env) for env in self.envs]

    def restore(self, snaps: list[dict[str, Any]]) -> None:
        for env, snap in zip(self.envs, snaps):
            restore(env, snap)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _serve_games(pipe: Connection, name: str, seeds: list[int], protocol: Protocol) -> None:
    """A child process's loop: run each (method, args) received on _Games, send back
    (True, value) or (False, traceback), until close or until the parent is gone (its end of the
    pipe closes). SIGINT and SIGTERM are the parent's to handle (run.lifecycle.StopOnSignal
    checkpoints, which needs the games' snapshots), so the child ignores them: Ctrl-C reaches the
    whole process group, and the child must outlive the parent's checkpoint."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    games = _Games(name, seeds, protocol)
    while True:
        try:
            method, args = pipe.recv()
        except EOFError:  # the parent is gone
            return
        try:
            pipe.send((True, getattr(games, method)(*args)))
        except Exception:  # reported to the parent, which raises it
            pipe.send((False, traceback.format_exc()))
        if method == "close":
            return


class GameProcessDied(Exception):
    """A game process ended (killed, out of memory, a crash) while a call was sent or awaited."""


class _GamesProcess:
    """_Games in a child process: send() a call to each process first, then collect each
    result(), so that the processes work at the same time. Both raise GameProcessDied when the
    process is gone."""

    def __init__(self, context: Any, name: str, seeds: list[int], protocol: Protocol) -> None:
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=_serve_games,
                                       args=(child_end, name, seeds, protocol), daemon=True)
        self.process.start()
        child_end.close()

    def send(self, method: str, *args: Any) -> None:
        try:
            self.pipe.send((method, args))
        except OSError:  # BrokenPipeError, ConnectionResetError: the child's end is closed
            raise self._died() from None

    def result(self) -> Any:
        try:
            ok, value = self.pipe.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if not ok:
            raise RuntimeError(f"a game process failed:\n{value}")
        return value

    def call(self, method: str, *args: Any) -> Any:
        self.send(method, *args)
        return self.result()

    def _died(self) -> GameProcessDied:
        self.process.join(timeout=10)  # it is gone or going: its exit code says how
        code = self.process.exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}" if code is not None else "no exit code yet")
        return GameProcessDied(f"game process {self.process.pid} ended ({how}; its error, if "
                               f"any, is on stderr)")

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.send("close")
                self.result()
            except (OSError, RuntimeError):
                pass  # already gone: nothing left to close
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.pipe.close()


# The most steps of each game a restarted game process replays (TrainEnvs._restart): TrainEnvs
# takes a snapshot of its games this often. Replaying steps the games as playing does (Breakout:
# about 650 agent steps/s per game, measured on the loaded 2-core machine), so a restart costs
# up to about 1.5 s per game of the process; a snapshot costs about 0.1 ms and 80 KB per game.
REPLAY_MAX_STEPS = 1_000


def _write_line(text: str) -> None:
    """A line of its own on stdout, without breaking a progress bar (as telemetry's)."""
    from tqdm import tqdm

    tqdm.write(text)


def checked_actions(actions: np.ndarray, games: int, action_count: int, who: str) -> np.ndarray:
    """actions as an array of one valid action per game; a ValueError (naming who) otherwise."""
    actions = np.asarray(actions)
    if actions.shape != (games,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"{who}: actions must be {games} integers, got shape {actions.shape} "
                         f"dtype {actions.dtype}")
    if actions.min() < 0 or actions.max() >= action_count:
        raise ValueError(f"{who}: actions must be in [0, {action_count}), got "
                         f"{actions.tolist()}")
    return actions


class TrainEnvs:
    """N training games (make_train_env) stepped together, each reset as soon as it ends.

        envs = TrainEnvs("Breakout", n, seed, protocol=MACHADO)  # protocol: DEEPMIND if not given
        frames = envs.reset()                                 # (N, 84, 84), once per run
        result = envs.step(actions)                           # actions: (N,) ints
        memory.append_batch(actions, rewards, result.frames, result.terminated, result.truncated)
        for i in np.flatnonzero(result.ended):
            memory.start_episode(result.reset_frames[i], stream=i)

    Game i is reset with seed game_seeds(seed, n)[i] (game 0: seed itself, so TrainEnvs(name,
    1, seed) is today's single env reset with reset(seed=seed)); later resets draw on each game's
    own random state. snapshot()/restore() save and put back every game exactly, for resume.

    processes=0 steps the games one after another in this process; processes=P >= 1 spreads them
    over min(P, n) child processes (contiguous rows each) that step at the same time. The results
    are the same either way, and snapshots move between the two. The child processes are started
    by multiprocessing's "forkserver" method (not "fork": the parent has torch's threads), which
    runs the main script again in each child: a script that makes TrainEnvs with processes >= 1
    needs Python's usual `if __name__ == "__main__":` guard (main.py has it).

    A child process that dies (kill -9, the kernel's OOM killer) is restarted in the call that
    finds it gone, and its games are brought back exactly where they were: a game's state is a
    function of where it started and the actions it was given, so the new process restores the
    games' last snapshots (or resets them from their seeds) and replays the actions played
    since, then answers the call. The run goes on as if nothing happened (a seeded run stays
    bit-identical); log(line) says so. The replay is at most REPLAY_MAX_STEPS steps per game:
    TrainEnvs takes a snapshot that often. A process that dies again while restarted is a
    RunError (one line).
    """

    def __init__(self, name: str, n: int, seed: int, *, processes: int = 0,
                 log: Callable[[str], None] | None = None,
                 protocol: Protocol = DEEPMIND) -> None:
        if processes < 0:
            raise ValueError(f"TrainEnvs: processes must be >= 0, got {processes}")
        self.name, self.protocol = name, protocol
        self.seeds = game_seeds(seed, n)
        self.action_count = action_count(name)
        self.log = log or _write_line
        # What a restarted process replays: the games' snapshots when last taken or restored
        # (None: the games as made, and reset from their seeds if _reset), and every step's
        # actions (N,) since.
        self._base: list[dict[str, Any]] | None = None
        self._reset = False
        self._since: list[np.ndarray] = []
        if processes == 0:
            self._local: _Games | None = _Games(name, self.seeds, protocol)
            self._parts: list[_GamesProcess] = []
        else:
            self._local = None
            self._context = multiprocessing.get_context("forkserver")
            slices = np.array_split(np.arange(n), min(processes, n))
            self._bounds = [(int(rows[0]), int(rows[-1]) + 1) for rows in slices]
            self._parts = [self._start(k) for k in range(len(self._bounds))]

    def __len__(self) -> int:
        return len(self.seeds)

    def _start(self, k: int) -> _GamesProcess:
        start, stop = self._bounds[k]
        return _GamesProcess(self._context, self.name, self.seeds[start:stop], self.protocol)

    def _call(self, method: str, per_part: list[Any] | None = None) -> list[Any]:
        """method on every part; per_part[k] (a tuple of arguments) goes to part k. A part
        whose process died is restarted, brought back to where it was, and asked again."""
        args = [per_part[k] if per_part else () for k in range(len(self._parts))]
        died: dict[int, GameProcessDied] = {}
        for k, part in enumerate(self._parts):
            try:
                part.send(method, *args[k])
            except GameProcessDied as e:
                died[k] = e
        results: list[Any] = [None] * len(self._parts)
        for k, part in enumerate(self._parts):
            if k not in died:
                try:
                    results[k] = part.result()
                except GameProcessDied as e:
                    died[k] = e
        for k, death in sorted(died.items()):
            results[k] = self._restart(k, death, method, args[k])
        return results

    def _restart(self, k: int, death: GameProcessDied, method: str, args: tuple) -> Any:
        """A new process for part k, its games where the dead one left them; then the call."""
        start, stop = self._bounds[k]
        games = f"games {start}-{stop - 1}" if stop - start > 1 else f"game {start}"
        self._parts[k].close()
        self._parts[k] = part = self._start(k)
        try:
            if self._base is not None:
                part.call("restore", self._base[start:stop])
            elif self._reset:
                part.call("reset")
            if self._since:
                part.call("replay", np.stack(self._since)[:, start:stop])
            result = part.call(method, *args)
        except GameProcessDied as again:
            raise RunError(f"{death} ({games} of --env-processes), and the process restarted "
                           f"for them ended too: {again}; stopped with the run's last checkpoint "
                           f"intact (--resume continues from it)") from None
        since = ("their last snapshot" if self._base is not None
                 else "their seeds" if self._reset else "where they were made")
        self.log(f"{death} ({games} of --env-processes): restarted it, and replayed "
                 f"{len(self._since)} agent steps of each game from {since}, so they go on "
                 f"exactly where they were")
        return result

    def _split(self, rows: Any) -> list[tuple]:
        """rows (one per game) cut into each part's arguments."""
        return [(rows[start:stop],) for start, stop in self._bounds]

    def reset(self) -> np.ndarray:
        """Start every game from its seed: the first frame of each, (N, 84, 84) uint8. Once, on
        games just made (a resumed run calls restore() instead): on a game in play the seed would
        be ignored, as EpisodicLife only really resets a game that is over."""
        if self._local is not None:
            return self._local.reset()
        frames = np.concatenate(self._call("reset"))
        self._base, self._reset, self._since = None, True, []
        return frames

    def step(self, actions: np.ndarray) -> StepResult:
        """Play actions[i] in game i; a game whose episode ends is reset in the same call.
        Bad actions are a ValueError before any game moves."""
        actions = checked_actions(actions, len(self), self.action_count, "TrainEnvs.step")
        if self._local is not None:
            return self._local.step(actions)
        result = StepResult.concatenate(self._call("step", self._split(actions)))
        self._since.append(actions.copy())
        if len(self._since) >= REPLAY_MAX_STEPS:
            self.snapshot()  # the new base: a restart replays from here
        return result

    def snapshot(self) -> list[dict[str, Any]]:
        """One snapshot() per game, in row order; plain types and bytes only."""
        if self._local is not None:
            return self._local.snapshot()
        snaps = [snap for part in self._call("snapshot") for snap in part]
        self._base, self._since = snaps, []
        return snaps

    def state(self) -> list[dict[str, Any]]:
        """The games' part of a checkpoint (checkpoint.Part): snapshot(); restore() takes it."""
        return self.snapshot()

    def restore(self, snaps: list[dict[str, Any]]) -> None:
        """Put every game back where snapshot() saw it; needs as many snapshots as games."""
        if len(snaps) != len(self):
            raise ValueError(f"TrainEnvs.restore: {len(snaps)} snapshots for {len(self)} "
                             f"games (resume with the --envs the run was started with)")
        if self._local is not None:
            self._local.restore(snaps)
        else:
            self._call("restore", self._split(list(snaps)))
            self._base, self._since = list(snaps), []

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        for part in self._parts:
            part.close()


# --- N evaluation games at once -----------------------------------------------------------------

class EvalEnvs:
    """N evaluation games (make_eval_env) played side by side, each once, from reset to its end.

        games = EvalEnvs("Breakout", n, max_steps=..., protocol=MACHADO)  # DEEPMIND if not given
        frames = games.reset(seed)                  # game i: seed game_seeds(seed, n)[i]
        while games.playing.any():
            result = games.step(actions)            # (N,) ints; only playing games move
            scores += result.rewards

    A game that ended is not stepped again: its row keeps its last frame, reward 0 and no flags,
    and playing[i] is False. Row i is exactly a lone make_eval_env reset with its seed and given
    row i's actions up to its end. The games step in this process, one after another.
    """

    def __init__(self, name: str, n: int, *, max_steps: int, render: bool = False,
                 protocol: Protocol = DEEPMIND) -> None:
        if n < 1:
            raise ValueError(f"EvalEnvs: need at least one game, got {n}")
        self.envs = [make_eval_env(name, max_steps=max_steps, render=render, protocol=protocol)
                     for _ in range(n)]
        self.action_count = int(self.envs[0].action_space.n)
        self.playing = np.zeros(n, dtype=bool)
        self._frames = np.zeros((n, SCREEN_SIZE, SCREEN_SIZE), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seed: int) -> np.ndarray:
        """Start every game, game i with seed game_seeds(seed, n)[i]: (N, 84, 84) uint8."""
        for i, (env, game_seed) in enumerate(zip(self.envs, game_seeds(seed, len(self)))):
            self._frames[i] = env.reset(seed=game_seed)[0]
        self.playing[:] = True
        return self._frames.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Play actions[i] in every game still playing; bad actions are a ValueError before any
        game moves. game_over marks the games that ended in this step; nothing is reset."""
        actions = checked_actions(actions, len(self), self.action_count, "EvalEnvs.step")
        n = len(self)
        rewards, terminated, truncated = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        for i in np.flatnonzero(self.playing):
            frame, rewards[i], terminated[i], truncated[i], _ = self.envs[i].step(int(actions[i]))
            self._frames[i] = frame
        ended = terminated | truncated
        self.playing &= ~ended
        frames = self._frames.copy()
        return StepResult(frames, rewards, terminated, truncated, ended, frames)

    def render(self, i: int) -> np.ndarray:
        """Game i's RGB screen (EvalEnvs made with render=True)."""
        return self.envs[i].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()
