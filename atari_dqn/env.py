"""The one place that builds Atari environments, for training and for evaluation: one game, or N
games played side by side (TrainEnvs, EvalEnvs).

Both variants share the DeepMind preprocessing of gymnasium's AtariPreprocessing on a
NoFrameskip game without sticky actions:
  reset: 1..30 random no-ops, then FIRE for games that wait for it (Breakout, ...)
  step:  the action repeated for FRAME_SKIP emulator frames, observation = pixel-wise max of the
         last two frames, grayscale, resized to 84x84 (uint8)
They differ in what an episode is:
  training:   one life. A lost life returns terminated=True so the learner sees it as the end
              of the episode, but reset() then only plays a no-op (and FIRE) unless the real game
              is over. info["game_over"] says which. Games are cut after TRAIN_MAX_FRAMES.
  evaluation: a whole game (all lives), cut after a caller-chosen number of agent steps.
Observations are single 84x84 uint8 frames in both. Frames are stacked into states by one rule,
the replay memory's (ReplayMemory.state(): the last STACK frames of the episode, padded at its
start by repeating its first frame), in training and in evaluation alike (evaluate.py).
Rewards are left raw here: the learner clips them with learning_reward(), scores use them raw.
AtariPreprocessing's own terminal_on_life_loss is not used: it fully resets the game at a lost
life, which is not what DeepMind did.

N games side by side are N of these same envs, each stepped by the same code as a lone one, so
row i is exactly a lone env reset with seed game_seeds(seed, N)[i] (game 0: seed itself) and
given row i's actions. TrainEnvs resets a training game in the step that ends its episode and
returns both its last frame and the next episode's first; EvalEnvs plays each game once, to its
end. Training games can step in child processes (processes=P): ale-py's act() holds the GIL, so
threads would not run emulators at the same time. snapshot()/restore() save a training game (or
all N) exactly, for resume.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing

from atari_dqn.config import FRAME_SKIP, SCREEN_SIZE, STACK, ConfigError  # noqa: F401 (re-exported)

gym.register_envs(ale_py)

NOOP_MAX = 30
TRAIN_MAX_FRAMES = 108_000  # 30 minutes of play at 60 Hz = 27,000 agent steps


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


def _base_env(name: str, *, max_frames: int, render: bool) -> gym.Env:
    env = gym.make(resolve_env_id(name), frameskip=1, repeat_action_probability=0.0,
                   max_num_frames_per_episode=max_frames,
                   render_mode="rgb_array" if render else None)
    return AtariPreprocessing(env, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP,
                              screen_size=SCREEN_SIZE, terminal_on_life_loss=False,
                              grayscale_obs=True)


def _needs_fire(env: gym.Env) -> bool:
    return "FIRE" in env.unwrapped.get_action_meanings()


def make_train_env(name: str) -> gym.Env:
    """A game whose lost lives end learning episodes; cut after TRAIN_MAX_FRAMES."""
    env: gym.Env = EpisodicLife(_base_env(name, max_frames=TRAIN_MAX_FRAMES, render=False))
    return FireOnReset(env) if _needs_fire(env) else env


def make_eval_env(name: str, *, max_steps: int, render: bool = False) -> gym.Env:
    """Whole games cut after max_steps agent steps; env.render() gives the RGB screen if render."""
    env: gym.Env = _base_env(name, max_frames=max_steps * FRAME_SKIP, render=render)
    return FireOnReset(env) if _needs_fire(env) else env


# --- exact save and restore of a training environment in mid-episode ---------------------------
# What the next step depends on: the emulator (ALE state incl. its RNG), the env's numpy RNG (the
# number of no-ops at the next real reset), AtariPreprocessing's two-frame max buffer, and the
# life counter of EpisodicLife. FireOnReset keeps no state.

def snapshot(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue this env's episode exactly; only plain types and bytes."""
    prep, life = _find(env, AtariPreprocessing), _find(env, EpisodicLife)
    return {
        "ale": pickle.dumps(env.unwrapped.ale.cloneState(include_rng=True)),
        "np_random": env.unwrapped.np_random.bit_generator.state,
        "obs_buffer": [b.tobytes() for b in prep.obs_buffer],
        "prep_lives": int(prep.lives),
        "prep_game_over": bool(prep.game_over),
        "life_lives": int(life.lives) if life else None,
        "life_game_over": bool(life.game_over) if life else None,
    }


def restore(env: gym.Env, snap: dict[str, Any]) -> None:
    """Put a freshly made env of the same game into the state snapshot() saw."""
    env.reset(seed=0)  # gymnasium refuses step() before a first reset; everything is overwritten
    env.unwrapped.ale.restoreState(pickle.loads(snap["ale"]))
    env.unwrapped.np_random.bit_generator.state = snap["np_random"]
    prep, life = _find(env, AtariPreprocessing), _find(env, EpisodicLife)
    for buf, raw in zip(prep.obs_buffer, snap["obs_buffer"]):
        buf[...] = np.frombuffer(raw, dtype=buf.dtype).reshape(buf.shape)
    prep.lives, prep.game_over = snap["prep_lives"], snap["prep_game_over"]
    if life is not None:
        life.lives, life.game_over = snap["life_lives"], snap["life_game_over"]


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

    def __init__(self, name: str, seeds: list[int]) -> None:
        self.seeds = seeds
        self.envs = [make_train_env(name) for _ in seeds]

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

    def snapshot(self) -> list[dict[str, Any]]:
        return [snapshot(env) for env in self.envs]

    def restore(self, snaps: list[dict[str, Any]]) -> None:
        for env, snap in zip(self.envs, snaps):
            restore(env, snap)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _serve_games(pipe: Connection, name: str, seeds: list[int]) -> None:
    """A child process's loop: run each (method, args) received on _Games, send back
    (True, value) or (False, traceback), until close or until the parent is gone (its end of the
    pipe closes). SIGINT and SIGTERM are the parent's to handle (train.StopOnSignal checkpoints,
    which needs the games' snapshots), so the child ignores them: Ctrl-C reaches the whole
    process group, and the child must outlive the parent's checkpoint."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    games = _Games(name, seeds)
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


class _GamesProcess:
    """_Games in a child process: send() a call to each process first, then collect each
    result(), so that the processes work at the same time."""

    def __init__(self, context: Any, name: str, seeds: list[int]) -> None:
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=_serve_games, args=(child_end, name, seeds),
                                       daemon=True)
        self.process.start()
        child_end.close()

    def send(self, method: str, *args: Any) -> None:
        self.pipe.send((method, args))

    def result(self) -> Any:
        try:
            ok, value = self.pipe.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1)
            raise RuntimeError(f"a game process ended unexpectedly (exit code "
                               f"{self.process.exitcode}; its error, if any, is on stderr)") from None
        if not ok:
            raise RuntimeError(f"a game process failed:\n{value}")
        return value

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

        envs = TrainEnvs("Breakout", n, seed)
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
    """

    def __init__(self, name: str, n: int, seed: int, *, processes: int = 0) -> None:
        if processes < 0:
            raise ValueError(f"TrainEnvs: processes must be >= 0, got {processes}")
        self.seeds = game_seeds(seed, n)
        self.action_count = action_count(name)
        if processes == 0:
            self._local: _Games | None = _Games(name, self.seeds)
            self._parts: list[_GamesProcess] = []
        else:
            self._local = None
            context = multiprocessing.get_context("forkserver")
            slices = np.array_split(np.arange(n), min(processes, n))
            self._bounds = [(int(rows[0]), int(rows[-1]) + 1) for rows in slices]
            self._parts = [_GamesProcess(context, name, self.seeds[start:stop])
                           for start, stop in self._bounds]

    def __len__(self) -> int:
        return len(self.seeds)

    def _call(self, method: str, per_part: list[Any] | None = None) -> list[Any]:
        """method on every part; per_part[k] (a tuple of arguments) goes to part k."""
        for k, part in enumerate(self._parts):
            part.send(method, *(per_part[k] if per_part else ()))
        return [part.result() for part in self._parts]

    def _split(self, rows: Any) -> list[tuple]:
        """rows (one per game) cut into each part's arguments."""
        return [(rows[start:stop],) for start, stop in self._bounds]

    def reset(self) -> np.ndarray:
        """Start every game from its seed: the first frame of each, (N, 84, 84) uint8. Once, on
        games just made (a resumed run calls restore() instead): on a game in play the seed would
        be ignored, as EpisodicLife only really resets a game that is over."""
        if self._local is not None:
            return self._local.reset()
        return np.concatenate(self._call("reset"))

    def step(self, actions: np.ndarray) -> StepResult:
        """Play actions[i] in game i; a game whose episode ends is reset in the same call.
        Bad actions are a ValueError before any game moves."""
        actions = checked_actions(actions, len(self), self.action_count, "TrainEnvs.step")
        if self._local is not None:
            return self._local.step(actions)
        return StepResult.concatenate(self._call("step", self._split(actions)))

    def snapshot(self) -> list[dict[str, Any]]:
        """One snapshot() per game, in row order; plain types and bytes only."""
        if self._local is not None:
            return self._local.snapshot()
        return [snap for part in self._call("snapshot") for snap in part]

    def restore(self, snaps: list[dict[str, Any]]) -> None:
        """Put every game back where snapshot() saw it; needs as many snapshots as games."""
        if len(snaps) != len(self):
            raise ValueError(f"TrainEnvs.restore: {len(snaps)} snapshots for {len(self)} "
                             f"games (resume with the --envs the run was started with)")
        if self._local is not None:
            self._local.restore(snaps)
        else:
            self._call("restore", self._split(list(snaps)))

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        for part in self._parts:
            part.close()


# --- N evaluation games at once -----------------------------------------------------------------

class EvalEnvs:
    """N evaluation games (make_eval_env) played side by side, each once, from reset to its end.

        games = EvalEnvs("Breakout", n, max_steps=...)
        frames = games.reset(seed)                  # game i: seed game_seeds(seed, n)[i]
        while games.playing.any():
            result = games.step(actions)            # (N,) ints; only playing games move
            scores += result.rewards

    A game that ended is not stepped again: its row keeps its last frame, reward 0 and no flags,
    and playing[i] is False. Row i is exactly a lone make_eval_env reset with its seed and given
    row i's actions up to its end. The games step in this process, one after another.
    """

    def __init__(self, name: str, n: int, *, max_steps: int, render: bool = False) -> None:
        if n < 1:
            raise ValueError(f"EvalEnvs: need at least one game, got {n}")
        self.envs = [make_eval_env(name, max_steps=max_steps, render=render) for _ in range(n)]
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
