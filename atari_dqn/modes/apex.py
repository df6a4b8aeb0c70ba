"""Ape-X (Horgan et al. 2018) on Ray core: actors that play, one learner (this process) that learns.

    python main.py --actors K [--ray-address auto|HOST:PORT] [the usual flags]

Actors are Ray actors (class Actor), K of them, each playing --envs training games (envs.TrainEnvs)
with a CPU copy of the network and fixed epsilons: over all N = K * envs actor games, game i acts
with eps_i = 0.4 ** (1 + 7 i / (N - 1)) (schedule.apex_epsilons), through the same
agent.epsilon_greedy every other actor uses. An actor plays a chunk when the learner asks for one
(Actor.play) and returns it as a Chunk: for each agent step of each game one new 84x84 frame, the
action, the raw reward, the terminated/truncated/game-over flags, and the first frame of every
episode that began (never stacked states; the learner's memory stacks them), plus, with
--prioritized, the initial priorities (actor_priorities). It stacks its own states with a small
replay memory, by the same rule as the learner's. It takes new weights from the object store when
the learner has published newer ones and it has played WEIGHTS_EVERY_STEPS agent steps (per game)
since it last did.
The learner lives in the driver: the C++ multi-stream memory has one stream per actor game
(stream = actor * envs + game), so sampling never leaves this process. Per chunk, each row is
appended to its stream in step order (ReplayMemory.append(..., stream=s); append_batch takes a
row for every stream and a chunk has rows for one actor's only), and the learner then learns,
applies priorities and publishes weights (ray.put) as the one-process loop does, but samples
each batch one update ahead (below):

  - Replay ratio: update u (1, 2, ...) stands for agent step b_u, the u-th multiple of
    --train-every above --learning-starts, exactly the steps at which the one-process loop
    learns; it runs once the actors have delivered b_u agent steps (over all games). The target
    network is copied after the update whose b_u crosses a multiple of --target-update.
  - Rate limiter (rate_limiter.RateLimiter, as Reverb's SampleToInsertRatio): the learner
    waits (ray.wait) when it has made every update the delivered steps allow; actors are not
    asked for another chunk when the steps asked for would pass the learner's next b,
    b_(updates made + 1), by more than one chunk per actor (its tolerance). So at any time
    (learning started)
        0 <= delivered - b_(made) < --train-every + one chunk per actor + one chunk:
    the replay ratio over a run is the one-process run's (batch / --train-every samples per
    agent step) up to that many agent steps. Before an evaluation, and when stopping, the
    learner catches up exactly: evaluations and checkpoints see the one-process ratio.
  - Back-pressure: at most CHUNKS_IN_FLIGHT chunk requests per actor, so the object store holds
    at most K * CHUNKS_IN_FLIGHT chunks (about 360 KB each at 50 steps of one game).
  - Sample-ahead: while update u learns, a worker thread (updates.Updates' `ahead` pool)
    samples the batch of update u + 1 from the memory (its sample() releases the GIL), when
    u + 1 comes before the next evaluation (or the run's end). That batch is drawn before the
    chunks received during update u are stored and before u's priorities are applied: it
    misses at most one update's worth of data and priorities. The update itself
    still runs at its b_(u+1). A batch sampled ahead and not used (a stop) is dropped before the
    checkpoint, which saves the memory with no sample in flight; its draw has moved the
    memory's RNG on. (Distributed runs are not bit-reproducible anyway: chunks and updates
    interleave as the actors' timing has it.)
  - Chunks are never asked across an evaluation boundary (multiples of --eval-every and
    --steps): at those steps nothing is in flight, the memory holds exactly those steps, and the
    evaluation and checkpoint happen as in a one-process run.

Faults: an actor created with max_restarts=-1 is restarted by Ray when its process dies (or its
node is lost); the chunks it held fail with a RayActorError. The death is logged once (one line
of progress output, one count of TensorBoard dist/actor_restarts), the failed chunks are asked
for again, and the actor is asked for nothing until it answers again (a probe call that Ray
retries until the restarted actor takes it): asked meanwhile, with max_task_retries=0, a chunk
would fail at once as "temporarily unavailable", again and again. A restarted actor starts fresh
games: its next chunk carries their first frames, and the learner starts new episodes on its
streams (start_episode cuts the ones in progress; episodes.csv gets no line for the games it
lost). If the driver dies, --resume continues from the last checkpoint: memory, learner and
counters continue, the actors start fresh games.

Network: the run's own Ray instance (no --ray-address) puts its node on LOCAL_RAY_HOST, a
loopback address, and a driver joining a cluster at a loopback HOST:PORT takes that host as its
node address (driver_node_ip), so a one-machine run talks over loopback only. (Ray's servers
still listen on every interface: Ray 2.60 has no setting for that.) Output that is not a terminal
gets no colour codes from Ray (plain_ray_output).

Initial priorities (--prioritized): the actor computes |TD error| with its copy of the online
network as the learner would with n-step returns: |G_t + gamma^n max_a Q(s_{t+n}, a) - Q(s_t,
a_t)|, where the episode's end stops G_t (no bootstrap after a terminal, bootstrapping from the
true last state after a truncation). With a distributional head it is the learner's mean
|quantile TD error| over all pairs of the network's samples (QNetwork.samples: quantiles; IQN's
at taus its rng names), bootstrapping from the greedy action's samples, so fresh
and replayed transitions' priorities have one scale. Two documented simplifications: the actor
has no target network, so it bootstraps with its online copy's greedy value (Ape-X does the
same); and for the last n - 1 steps of a chunk, whose n steps are not all played yet, it uses
the k < n steps it has, bootstrapping from the newest state. The memory ignores priorities of
ids still pending (their n steps not all stored yet), so the learner applies those again after
the actor's next chunk.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def plain_ray_output() -> None:
    """No colour codes in the worker lines Ray forwards to this process when its output is not a
    terminal (a log file): Ray reads RAY_COLOR_PREFIX as it prints each line
    (worker.print_worker_logs), and RAY_DEDUP_LOGS when it is imported (its dedup appends a
    green "[repeated Nx across cluster]"; off, every line is printed as it came). Called before
    `import ray` below; a value the user set is kept."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")


plain_ray_output()
import ray  # noqa: E402 (after plain_ray_output)
from ray.exceptions import RayActorError  # noqa: E402

from atari_dqn import seeds
from atari_dqn.config import STACK, Config, ConfigError
from atari_dqn.envs import atari as envs
from atari_dqn.learn.agent import Agent, epsilon_greedy, network_of
from atari_dqn.learn.schedule import apex_epsilons
from atari_dqn.modes.memory import make_memory
from atari_dqn.modes.rate_limiter import ACTORS, LEARNER, NOBODY, RateLimiter
from atari_dqn.run.checkpoint import (Fixed, Part, Progress, ReplayFile, load_checkpoint,
                                      online_parts, tidy_run_dir)
from atari_dqn.run.episodes import GameLog
from atari_dqn.run.evaluate import evaluation_games, frame_stacker
from atari_dqn.run.lifecycle import RunResult, StopRequest, prepare, run_source
from atari_dqn.run.telemetry import LOG_EVERY_STEPS, Telemetry, crossed
from atari_dqn.run.updates import PendingPriorities, Updates

CHUNK_STEPS = 50  # agent steps per game in one chunk: Ape-X's actor-side buffer (B = 50)
# An actor takes new weights at most every this many of its agent steps per game (Ape-X: every
# 400 frames). One fetch moves the whole network, 13.2 MB for the default dueling Nature CNN,
# as much as about 1,860 transitions: at 400 the weights are already about 4/5 of the traffic
# (docs/distributed.md), so fetching more often would buy fresher actors with bandwidth.
WEIGHTS_EVERY_STEPS = 400
CHUNKS_IN_FLIGHT = 2  # per actor: one being played while the learner appends the other
ACTOR_NAME = "apex-actor"  # actor i is named apex-actor-i in the run's (driver's) namespace
ACTOR_CPUS = 1  # Ray CPUs an actor asks for: its games and a batch-E forward, one thread
# The loopback address of the run's own Ray instance (an empty --ray-address). Not 127.0.0.1:
# Ray 2.60 rewrites 127.0.0.1 and localhost to the machine's network address, not the rest of
# 127.0.0.0/8 (services.resolve_ip_for_localhost).
LOCAL_RAY_HOST = "127.0.0.2"
CONNECT_TIMEOUT_S = 10.0  # how long --ray-address HOST:PORT may take to answer
GCS_CONNECT_TRIES = 1  # ray.init's tries to reach the cluster's GCS (Ray's default: 20)
WAIT_S = 0.5  # the longest the learner waits for a chunk before it looks at signals again


@dataclass
class Chunk:
    """T agent steps of an actor's E games; row (t, e) is step t of game e (stream actor*E + e)."""
    actor: int
    start_frames: np.ndarray | None  # (E, 84, 84) uint8: fresh games began before this chunk
    actions: np.ndarray              # (T, E) int64
    rewards: np.ndarray              # (T, E) float64: raw game rewards (the learner clips them)
    frames: np.ndarray               # (T, E, 84, 84) uint8: the observation after each step
    terminated: np.ndarray           # (T, E) bool
    truncated: np.ndarray            # (T, E) bool
    game_over: np.ndarray            # (T, E) bool: the real game ended (its score is complete)
    reset_frames: np.ndarray         # (R, 84, 84) uint8: first frame of the next episode of each
    #                                  row that ended (terminated or truncated), in (t, e) order
    priorities: np.ndarray | None    # (T, E) float32 |TD error| (with --prioritized)
    seconds: float                   # the actor's wall-clock time playing it
    states: np.ndarray | None = None  # (T, E, STACK, 84, 84): the states acted on (tests only)

    @property
    def steps(self) -> int:
        return self.actions.size


def actor_seed(seed: int, actor: int) -> int:
    """The seed of actor `actor`'s games (envs.game_seeds spreads it over its E games)."""
    return int(np.random.SeedSequence([seed, seeds.APEX_ACTORS, actor]).generate_state(1)[0])


def actor_priorities(q_taken: np.ndarray, next_q: np.ndarray, rewards: np.ndarray,
                     terminated: np.ndarray, truncated: np.ndarray, *, gamma: float,
                     n_step: int) -> np.ndarray:
    """(T, E) float32 priorities of a chunk, as the learner defines them: the mean over all pairs
    (i, j) of |G + bootstrap_j - q_i|. rewards (clipped), terminated, truncated: (T, E).

    A scalar head: q_taken = Q(s_t, a_t) and next_q = max_a Q(s_{t+1}, a), (T, E), so the
    priority is |G + gamma^k max_a Q - Q(s_t, a_t)|. A distributional head: q_taken (T, E, N)
    the samples of Q(s_t, a_t), next_q (T, E, N) those of the greedy action (the largest mean)
    at s_{t+1}, the mean |quantile TD error| of heads/quantile.quantile_losses. s_{t+1} is the
    state after step t: for a step that ended its episode, the stack of its last frames.

    G sums gamma^j r_{t+j} for j < k, where k is n_step, or fewer when the episode ends (a
    terminal: no bootstrap) or the chunk ends first (bootstrap from the newest state); the
    bootstrap is gamma^k next_q at step t + k - 1."""
    steps, games = rewards.shape
    q_taken = q_taken.reshape(steps, games, -1)  # a scalar head's Q-value: one "quantile"
    next_q = next_q.reshape(steps, games, -1)
    out = np.empty((steps, games), np.float32)
    for e in range(games):
        for t in range(steps):
            ret, discount, k = 0.0, 1.0, t
            while True:
                ret += discount * float(rewards[k, e])
                discount *= gamma
                if terminated[k, e]:
                    bootstrap = np.zeros(1)
                    break
                if truncated[k, e] or k - t + 1 == n_step or k == steps - 1:
                    bootstrap = discount * next_q[k, e].astype(np.float64)
                    break
                k += 1
            targets = ret + bootstrap  # (N') or (1,)
            out[t, e] = np.abs(targets[None, :] - q_taken[t, e][:, None]).mean()
    return out


class Actor:
    """One Ape-X actor: --envs training games, a CPU copy of the network, fixed epsilons.
    Made a Ray actor by start_actors(); plain Python otherwise (tests may call it directly)."""

    def __init__(self, config_json: str, index: int, keep_states: bool = False) -> None:
        config = Config.from_json(config_json)
        torch.set_num_threads(1)  # one Ray CPU per actor
        games = config.envs
        self.index, self.keep_states = index, keep_states
        self.gamma, self.n_step, self.prioritized = config.gamma, config.n_step, config.prioritized
        first = index * games
        self.epsilons = np.array(apex_epsilons(config.streams)[first:first + games])
        self.games = envs.TrainEnvs(config.env_id, games, actor_seed(config.seed, index),
                                    protocol=envs.PROTOCOLS[config.protocol])
        self.network = network_of(self.games.action_count, config).requires_grad_(False)
        self.rng = np.random.default_rng([config.seed, seeds.APEX_ACTORS, index])
        # Stacks states by the learner memory's rule, as evaluation does (the one stacker)
        self.stacker = frame_stacker(games)
        self.start_frames: np.ndarray | None = self.games.reset()
        for stream, frame in enumerate(self.start_frames):
            self.stacker.start_episode(frame, stream=stream)
        self.version, self.steps_since_fetch = -1, 0
        self.device = torch.device("cpu")

    def pid(self) -> int:
        return os.getpid()

    def _take_weights(self, weights: list[Any], version: int) -> None:
        """Load the published weights (weights[0]: an ObjectRef in a list, so that Ray does not
        fetch it with every call) when newer and the actor has played enough since the last."""
        if version == self.version or (self.version >= 0
                                       and self.steps_since_fetch < WEIGHTS_EVERY_STEPS):
            return
        state = ray.get(weights[0]) if isinstance(weights[0], ray.ObjectRef) else weights[0]
        self.network.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        self.version, self.steps_since_fetch = version, 0

    def play(self, steps: int, weights: list[Any], version: int) -> Chunk:
        """Play `steps` agent steps in each game; return them as a Chunk."""
        started = time.perf_counter()
        self._take_weights(weights, version)
        games = len(self.games)
        states = np.empty((steps, games, STACK, envs.SCREEN_SIZE, envs.SCREEN_SIZE), np.uint8)
        actions = np.empty((steps, games), np.int64)
        rewards = np.empty((steps, games), np.float64)
        frames = np.empty((steps, games, envs.SCREEN_SIZE, envs.SCREEN_SIZE), np.uint8)
        flags = {name: np.empty((steps, games), bool)
                 for name in ("terminated", "truncated", "game_over")}
        reset_frames = []
        for t in range(steps):
            states[t] = self.stacker.states()
            actions[t] = epsilon_greedy(self.network, states[t], self.epsilons, self.rng,
                                        self.device)
            result = self.games.step(actions[t])
            self.stacker.append_batch(actions[t], envs.learning_rewards(result.rewards),
                                      result.frames, result.terminated, result.truncated,
                                      reset_frames=result.reset_frames)
            rewards[t], frames[t] = result.rewards, result.frames
            for name, array in flags.items():
                array[t] = getattr(result, name)
            reset_frames.extend(result.reset_frames[np.flatnonzero(result.ended)])
        self.steps_since_fetch += steps
        priorities = None
        if self.prioritized:
            priorities = self._priorities(states, actions, rewards, frames, flags)
        start_frames, self.start_frames = self.start_frames, None
        empty = np.empty((0, envs.SCREEN_SIZE, envs.SCREEN_SIZE), np.uint8)
        return Chunk(self.index, start_frames, actions, rewards, frames, flags["terminated"],
                     flags["truncated"], flags["game_over"],
                     np.stack(reset_frames) if reset_frames else empty, priorities,
                     time.perf_counter() - started, states if self.keep_states else None)

    @torch.inference_mode()
    def _priorities(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    frames: np.ndarray, flags: dict[str, np.ndarray]) -> np.ndarray:
        # The state after step t: its state's newest STACK - 1 frames and the frame it led to.
        next_states = np.concatenate([states[:, :, 1:], frames[:, :, None]], axis=2)
        shape = (-1, STACK, envs.SCREEN_SIZE, envs.SCREEN_SIZE)
        values = self._values(torch.from_numpy(states.reshape(shape)))  # (B, A, N)
        next_values = self._values(torch.from_numpy(next_states.reshape(shape)))
        rows = np.arange(len(values))
        q_taken = values[rows, actions.reshape(-1)]                              # (B, N)
        next_q = next_values[rows, next_values.mean(axis=2).argmax(axis=1)]      # (B, N)
        per_step = (*actions.shape, -1)
        return actor_priorities(q_taken.reshape(per_step), next_q.reshape(per_step),
                                envs.learning_rewards(rewards).reshape(actions.shape),
                                flags["terminated"], flags["truncated"], gamma=self.gamma,
                                n_step=self.n_step)

    def _values(self, states: torch.Tensor) -> np.ndarray:
        """(B, A, N): the network's samples of the return (a scalar head's Q-values: N = 1)."""
        return self.network.samples(states, self.rng).numpy()

    def close(self) -> None:
        self.games.close()


def append_chunk(memory: Any, chunk: Chunk, games: int) -> np.ndarray:
    """Store a chunk in the learner's memory, step by step; return its ids, (T, E) int64.
    Game e of actor a is stream a * games + e; a chunk from fresh games first starts them."""
    first_stream = chunk.actor * games
    if chunk.start_frames is not None:
        for e, frame in enumerate(chunk.start_frames):
            memory.start_episode(frame, stream=first_stream + e)
    rewards = envs.learning_rewards(chunk.rewards)
    ids = np.empty(chunk.actions.shape, np.int64)
    reset_row = 0
    for t in range(chunk.actions.shape[0]):
        for e in range(games):
            stream = first_stream + e
            ended = bool(chunk.terminated[t, e] or chunk.truncated[t, e])
            ids[t, e] = memory.appended
            memory.append(int(chunk.actions[t, e]), float(rewards[t, e]), chunk.frames[t, e],
                          bool(chunk.terminated[t, e]), bool(chunk.truncated[t, e]), stream)
            if ended:
                memory.start_episode(chunk.reset_frames[reset_row], stream=stream)
                reset_row += 1
    return ids


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line_of(error: BaseException) -> str:
    """An error's first line, without terminal colour codes (Ray colours some of its messages)."""
    text = ANSI_ESCAPE.sub("", str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0]


def is_loopback(host: str) -> bool:
    """Whether host (a name or an IP address) is this machine's loopback: localhost, 127.0.0.0/8
    or ::1."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name
        return False


def driver_node_ip(address: str | None) -> str | None:
    """The driver's node address (ray.init's _node_ip_address) for a cluster address: the host
    of a loopback HOST:PORT (e.g. 127.0.0.2 of `ray start --head --node-ip-address 127.0.0.2`);
    for the run's own instance (None), LOCAL_RAY_HOST where it can be bound, so that its node
    is on loopback too; else None, Ray's choice (the machine's network address)."""
    if address is None:
        try:
            with socket.socket() as probe:
                probe.bind((LOCAL_RAY_HOST, 0))
        except OSError:  # e.g. macOS, which has only 127.0.0.1 unless given an alias
            return None
        return LOCAL_RAY_HOST
    host = address.rpartition(":")[0] if address != "auto" else ""
    return host.strip("[]") if host and is_loopback(host) else None


def connect(config: Config, actor_resources: dict[str, float]) -> None:
    """ray.init for the run, then check that the cluster has what K actors ask for. Every
    failure is a ConfigError (one line), within about CONNECT_TIMEOUT_S. On loopback: the run's
    own Ray instance (empty --ray-address) and a --ray-address on loopback stay there
    (driver_node_ip)."""
    address = config.ray_address or None
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)),
                                     timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as e:
            raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({e}); "
                              f"start one with `ray start --head`") from None
    if address:
        # Ray tries a GCS that does not answer 20 times, up to 40 s each (a port that answers
        # TCP but leads to no GCS, e.g. 127.0.0.1 of a cluster bound to the machine's address):
        # 13 minutes. One try: exit 2 after 47 s measured on the loaded 2-core machine.
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(GCS_CONNECT_TRIES))
    try:
        # "local": a new instance even where `ray start` left one (ray.init(address=None) would
        # join it), unless RAY_ADDRESS names a cluster: Ray then joins that one.
        ray.init(address=address or "local",
                 include_dashboard=False if address is None else None,
                 logging_level="ERROR", log_to_driver=True,
                 _node_ip_address=driver_node_ip(address or os.environ.get("RAY_ADDRESS")
                                                 or None))
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        raise ConfigError(f"--ray-address {address}: cannot connect ({first_line_of(e)})") \
            from None
    have = ray.cluster_resources()
    needed = {"CPU": config.actors * ACTOR_CPUS,
              **{name: config.actors * amount for name, amount in actor_resources.items()}}
    for name, amount in needed.items():
        if have.get(name, 0.0) < amount:
            ray.shutdown()
            raise ConfigError(f"--actors {config.actors}: the Ray cluster has {have.get(name, 0):g} "
                              f"{name}, the actors need {amount:g}; add nodes or ask for fewer "
                              f"actors")


def start_actors(config: Config, options: dict[str, Any], keep_states: bool) -> list[Any]:
    remote = ray.remote(Actor)
    return [remote.options(name=f"{ACTOR_NAME}-{i}", num_cpus=ACTOR_CPUS, max_restarts=-1,
                           max_task_retries=0, **options).remote(config.to_json(), i, keep_states)
            for i in range(config.actors)]


@dataclass
class Rates:
    """What the progress line shows about the two sides since the last line."""
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    updates: int = 0
    learner_idle_s: float = 0.0  # waiting for chunks with every update made
    limiter_held: bool = False   # the rate limiter held a chunk request back
    restarts: int = 0

    def restart_window(self) -> None:
        self.started, self.steps, self.updates = time.perf_counter(), 0, 0
        self.learner_idle_s, self.limiter_held = 0.0, False

    def line(self, now: float) -> dict[str, str]:
        """waits: 'learner' when it waited for chunks over half the window, else 'actors (rate
        limiter)' when the limiter held a chunk request back in it, else '-'."""
        seconds = max(now - self.started, 1e-9)
        waits = (LEARNER if self.learner_idle_s > 0.5 * seconds
                 else ACTORS if self.limiter_held else NOBODY)
        return {"actor_steps_s": f"{self.steps / seconds:.0f}",
                "updates_s": f"{self.updates / seconds:.1f}",
                "learner_idle": f"{self.learner_idle_s / seconds:.0%}", "waits": waits}


def train_distributed(config: Config, *,
                      stop_when: Callable[[int], bool] = lambda step: False,
                      actor_options: dict[str, Any] | None = None,
                      on_chunk: Callable[[Any, np.ndarray, Chunk], None] | None = None,
                      keep_states: bool = False) -> RunResult:
    """train() with config.actors Ray actors (see the module's doc). actor_options: more Ray
    options for the actors (e.g. resources={"actors": 1} to place them); on_chunk(memory, ids,
    chunk) is called after each chunk is stored (tests, benchmarks); keep_states: the actors
    also send the states they acted on (Chunk.states, for tests)."""
    device, fresh = prepare(config)
    memory = make_memory(config) if fresh else None
    actor_options = dict(actor_options or {})
    connect(config, actor_options.get("resources", {}))
    try:
        setup = ActorSetup(actor_options, on_chunk, keep_states)
        return run_source(config, "step 0", lambda run: ApeX(config, run, device, memory, setup),
                          stop_when)
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class ActorSetup:
    """How the actors are started and watched (train_distributed's arguments)."""
    options: dict[str, Any]
    on_chunk: Callable[[Any, np.ndarray, Chunk], None] | None
    keep_states: bool


class ApeX:
    """The Ape-X Source: Ray actors play chunks of agent steps; the learner stores them and
    learns at the rate limiter's pace. One iteration runs up to the next evaluation (or the
    run's end), or until a stop is asked and what is in flight has come back."""

    def __init__(self, config: Config, run: Path, device: torch.device, memory: Any,
                 setup: ActorSetup) -> None:
        """memory: a new one, or None to load the checkpoint's."""
        self.config, self.run, self.setup, self.total = config, run, setup, config.total_steps
        self.eval_env = evaluation_games(config)
        self.updates: Updates | None = None
        try:
            self.agent = Agent(envs.action_count(config.env_id), config, device)
            self.act_rng = np.random.default_rng(config.seed)  # unused by actors; checkpoints
            self.progress = progress = Progress(game_scores=[0.0] * config.streams,
                                                game_steps=[0] * config.streams)
            self.pending = PendingPriorities()
            self.replay = ReplayFile(run, progress, memory, prioritized=config.prioritized)
            if memory is None:
                load_checkpoint(run, self.parts())
                # the actors start fresh games: the streams' games in progress are lost
                progress.game_scores = [0.0] * config.streams
                progress.game_steps = [0] * config.streams
                print(f"resumed {run} at agent step {progress.step}: the actors start fresh "
                      f"games")
            else:
                tidy_run_dir(run, progress, replay_name=None)
            self.memory = self.replay.memory  # the one memory from here on (restore makes it)
            self.episodes = GameLog(run, progress, config.streams)  # game = stream: a * envs + e
        except BaseException:  # e.g. a damaged checkpoint
            self.eval_env.close()
            raise
        self.actors: list[Any] = []
        # its tolerance: one chunk per actor; a checkpoint is taken with every update made, so
        # the updates the stored steps allow are counted as made
        self.limiter = RateLimiter(train_every_steps=config.train_every_steps,
                                   learning_starts_steps=config.learning_starts_steps,
                                   tolerance_steps=config.actors * config.envs * CHUNK_STEPS,
                                   batch_size=config.batch_size, stored=progress.step)
        self.publish_every = max(1, WEIGHTS_EVERY_STEPS // config.train_every_steps)
        self.weights: list[Any] = []
        self.version = 0
        # chunk ref -> (actor, agent steps, the actor's deaths logged when it was asked)
        self.in_flight: dict[Any, tuple[int, int, int]] = {}
        # One line per death: a chunk that fails is a new death when it was asked of an
        # incarnation not yet known dead (asked with deaths[actor] as it is now); the other
        # chunks the dead process held fail too, asked before the count moved, and are asked
        # again silently. A dead actor gets no chunk until it answers again (returning: a probe
        # Ray retries until the restarted actor answers), so none fails because it is still
        # restarting.
        self.deaths = [0] * config.actors
        self.returning: dict[Any, int] = {}  # probe ref -> the actor, restarting
        self.deferred: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # actor -> ids, priorities
        self.rates = Rates()
        self.mean_eps = float(np.mean(apex_epsilons(config.streams)))

    def start(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.updates = Updates(self.agent, self.memory, self.config, telemetry.learned,
                               self.pending,
                               ahead=ThreadPoolExecutor(1, thread_name_prefix="sample-ahead"))
        self.updates.finish()  # pending priorities of the checkpoint: applied before anything
        self.actors = start_actors(self.config, self.setup.options, self.setup.keep_states)
        self.publish()

    def publish(self) -> None:
        state = {k: v.detach().cpu().numpy() for k, v in self.agent.online.state_dict().items()}
        self.weights, self.version = [ray.put(state)], self.version + 1

    def iterate(self, progress: Progress, stop: StopRequest) -> None:
        """Up to the next evaluation (or the run's end): no chunk is asked across it. Returns
        with nothing in flight and every update made: at that boundary, or stopping. Returns
        or raises (a non-finite loss) with no batch sampled ahead: the checkpoint that may
        follow saves the memory with no sample in flight."""
        every = self.config.eval_every_steps
        boundary = min(self.total, (progress.step // every + 1) * every)
        try:
            while True:
                stopping = stop(progress.step)
                if not stopping:
                    self.ask(boundary)
                if self.limiter.may_update():
                    self.receive_ready(timeout_s=0.0)
                    self.learn_one(pause_step=boundary)
                elif self.in_flight or (self.returning and self.limiter.requested < boundary
                                        and not stopping):
                    self.receive_ready(timeout_s=WAIT_S)
                else:
                    return
        finally:
            self.updates.drop()  # a stop's batch sampled ahead (at a boundary there is none)

    def ask(self, boundary: int) -> None:
        """Ask for chunks: up to the boundary, CHUNKS_IN_FLIGHT per actor, and while the rate
        limiter allows (no more than its tolerance past the step of the learner's next update:
        with nothing in flight and the limit reached, that update is due, so the loop always
        has something to do, whatever --train-every)."""
        envs_per_actor, limiter = self.config.envs, self.limiter
        for actor, handle in enumerate(self.actors):
            if actor in self.returning.values():
                continue  # restarting
            while (sum(a == actor for a, _, _ in self.in_flight.values()) < CHUNKS_IN_FLIGHT
                   and limiter.requested < boundary):
                if not limiter.may_request():
                    self.rates.limiter_held = True
                    break
                per_game = min(CHUNK_STEPS, (boundary - limiter.requested) // envs_per_actor)
                ref = handle.play.remote(per_game, self.weights, self.version)
                self.in_flight[ref] = (actor, per_game * envs_per_actor, self.deaths[actor])
                limiter.request(per_game * envs_per_actor)

    def learn_one(self, pause_step: int) -> None:
        """Make the limiter's next update; pause_step: the next evaluation (or the run's end)."""
        config, limiter = self.config, self.limiter
        boundary = limiter.update()
        if len(self.memory) >= config.batch_size:  # as the one-process loop: skipped
            # Sample ahead: the batch of the next update is drawn on the pool while this one
            # learns, when that update comes before the next pause (the memory holds a batch
            # from now on, so that update samples too). Staleness: that batch is drawn before
            # the chunks received during this update are stored and before this update's
            # priorities are applied: at most one update's worth of data and priorities. It
            # still runs at its own boundary (the rate limiter is unchanged); only its sampling
            # moved earlier.
            following = limiter.step_of(limiter.updates + 1)
            self.updates.start(boundary, following if following <= pause_step else None)
            self.rates.updates += 1
        if boundary // config.target_update_steps != (boundary - config.train_every_steps) \
                // config.target_update_steps:
            self.agent.sync_target()
        if limiter.updates % self.publish_every == 0:
            self.publish()

    def receive_ready(self, timeout_s: float) -> None:
        """Store the chunks that are ready, waiting up to timeout_s for one (or for a restarted
        actor to answer). An actor plays its chunks in the order asked, and they are stored in
        that order: a chunk waits while an older one of its actor is still in flight."""
        waiting = [*self.in_flight, *self.returning]
        if not waiting:
            return
        waited = time.perf_counter()
        ready, _ = ray.wait(waiting, num_returns=1, timeout=timeout_s)
        if timeout_s > 0:  # the learner's idle wait (the poll between updates is not one)
            # Counted before receive() below, which may close the progress line's window: the
            # wait belongs to the window it happened in, and storing the chunks is not idle.
            self.rates.learner_idle_s += time.perf_counter() - waited
        if ready:
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        ready_set, blocked = set(ready), set()
        for ref in ready_set.intersection(self.returning):
            del self.returning[ref]  # the actor answers again: it may be asked for chunks
        for ref in list(self.in_flight):  # in the order asked
            actor = self.in_flight[ref][0]
            if ref in ready_set and actor not in blocked:
                self.receive(ref)
            else:
                blocked.add(actor)

    def receive(self, ref: Any) -> None:
        actor, steps, deaths_when_asked = self.in_flight.pop(ref)
        try:
            chunk: Chunk = ray.get(ref)
        except RayActorError as e:
            self.lost(actor, steps, deaths_when_asked, e)
            return
        ids = append_chunk(self.memory, chunk, self.config.envs)
        if self.config.prioritized:
            self.apply_priorities(actor, ids.reshape(-1), chunk.priorities.reshape(-1))
        self.log_games(actor, chunk)
        self.progress.step += chunk.steps
        self.limiter.store(chunk.steps)
        self.rates.steps += chunk.steps
        if self.setup.on_chunk is not None:
            self.setup.on_chunk(self.memory, ids, chunk)
        self.report(chunk.steps)

    def lost(self, actor: int, steps: int, deaths_when_asked: int, error: Exception) -> None:
        """A chunk failed: its actor died (one line per death) and Ray restarts it."""
        self.limiter.lost(steps)
        self.deferred.pop(actor, None)
        if deaths_when_asked < self.deaths[actor]:
            return  # of a death already logged
        self.deaths[actor] += 1
        self.rates.restarts += 1
        self.telemetry.logger.scalar("dist/actor_restarts", self.rates.restarts,
                                     self.progress.step)
        self.telemetry.message(f"actor {actor} died ({first_line_of(error)[:120]}); Ray "
                               f"restarts it with fresh games, and the chunks it was playing "
                               f"are asked again once it answers")
        self.returning[self.actors[actor].pid.options(max_task_retries=-1).remote()] = actor

    def log_games(self, actor: int, chunk: Chunk) -> None:
        """The chunk's rewards and game ends, to episodes.csv."""
        n = self.config.envs
        if chunk.start_frames is not None:  # fresh games (a restarted actor): the old ones end
            for stream in range(actor * n, (actor + 1) * n):
                self.episodes.new_game(stream)
        # in the order append_chunk stored them: row (t, e) is agent step step + t * envs + e + 1
        for (t, e), reward in np.ndenumerate(chunk.rewards):
            self.episodes.add(actor * n + e, reward, bool(chunk.game_over[t, e]),
                              self.progress.step + t * n + e + 1)
        self.episodes.flush()

    def report(self, steps: int) -> None:
        """The progress line after a chunk of `steps` agent steps, with the rates."""
        progress = self.progress
        line = self.rates.line(time.perf_counter())
        self.telemetry.stepped(progress, self.mean_eps, steps, line)
        if crossed(progress.step, steps, LOG_EVERY_STEPS):
            for name, value in line.items():
                if name != "waits":
                    self.telemetry.logger.scalar(f"dist/{name}", float(value.rstrip("%")),
                                                 progress.step)
            self.rates.restart_window()

    def apply_priorities(self, actor: int, ids: np.ndarray, priorities: np.ndarray) -> None:
        """The chunk's priorities, and those of the actor's last chunk that were still pending
        (the memory ignored them then)."""
        old_ids, old_priorities = self.deferred.pop(actor, (ids[:0], priorities[:0]))
        all_ids = np.concatenate([old_ids, ids])
        all_priorities = np.concatenate([old_priorities, priorities])
        self.memory.update_priorities(all_ids, all_priorities)
        pending = np.array([self.memory.priority(i) == 0.0 for i in ids.tolist()], bool)
        if pending.any():
            self.deferred[actor] = (ids[pending], priorities[pending])

    def stepped(self, progress: Progress) -> None:
        pass  # the progress line moves with each chunk stored (report)

    def settle(self) -> None:
        pass  # every update is made when an iteration returns; priorities are applied

    def parts(self) -> dict[str, Part]:
        """The checkpoint's registry (run/checkpoint.py): key -> part, in the order written. The
        actors' games are not saved (env: none), and the rate limiter needs no entry: a
        checkpoint is taken with every update the stored steps allow made and nothing in
        flight, so RateLimiter(stored=progress.step) is where it stood; nor a batch sampled
        ahead (iterate drops it before it returns)."""
        return online_parts(self.config, self.progress, self.agent, self.act_rng, Fixed([]),
                            self.replay, self.pending)

    def failed_at(self, progress: Progress) -> str:
        return f"agent step {progress.step}"

    def close(self) -> None:
        if self.updates is not None:
            self.updates.close()
        self.episodes.close()
        self.eval_env.close()
        for handle in self.actors:
            ray.kill(handle, no_restart=True)
