"""Every setting of a run: one frozen dataclass in sections, checked when built, in one place.

Units are in the names. An *agent step* is one action chosen by the agent; the emulator then runs
FRAME_SKIP (4) frames with it, so 1 agent step = 4 emulator frames. Every count in this file is in
agent steps unless its name says otherwise; in an offline run (no acting) the schedule's counts
that remain, --eval-every and --target-update, count gradient updates, as their help says.

The fields are declared in sections (SECTION_STARTS): game and protocol, network and head, replay
memory, learning, schedule, run folder and machine, Ape-X, offline training. A Config stays one
flat value, so config.json and checkpoints keep one key per setting, as every earlier run wrote
them. flags.py builds the command-line flags from the fields (the flag name is in the field's
metadata, the help text is the field's doc), grouped by section in --help, so a flag is
documented in exactly one place.

Every check of the settings themselves is here: each value and how values fit together
(__post_init__), and which flags a new run's mode takes (from_flags). What needs more than the
settings is checked where it is known: a resume's flags against the saved run
(run/checkpoint.resume_config), the game's name (flags.py), the machine's cores and memory
(run/machine.py), all before a run writes anything. This module imports no environment, torch or
replay code.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atari_dqn.learn import registry

FRAME_SKIP = 4  # emulator frames per agent step (DeepMind's setting; AtariPreprocessing's default)
SCREEN_SIZE = 84  # observations are SCREEN_SIZE x SCREEN_SIZE grayscale frames
STACK = 4  # frames per state: the network's input channels, stacked by the replay memory
DEVICES = ("auto", "cpu", "cuda")
# Limits of the code the settings reach, so that a bad value is refused here and not deep inside:
MAX_N_STEP = 1_000  # the replay memory's limit on n (csrc/replay_memory.cc, MemoryConfig)
MAX_EPISODE_FRAMES = 2**31 - 1  # ALE keeps a game's frame cap in a C int
MAX_SEED = 2**62  # seeds reach int64 C code (the memory, torch, ALE) as seed + agent step
MAX_STREAMS = 2**16  # the replay memory's limit on its streams, --envs x --actors (kMaxStreams:
                     # a transition's stream is kept in two bytes)
MAX_ACTIONS = 18  # ALE's full action set: no game has more. Sizes are checked for it, so a setting
                  # that fits one game fits them all (atari_dqn/run/machine.py)
# One Atari game (ALE inside gymnasium's wrappers), measured with Breakout on the 2-core machine:
# 1.5-2.2 MB of RAM a game (20 and 60 games) and 0.28-0.43 s to make and reset it. A process
# makes its games one after another.
GAME_BYTES = 1_500_000
GAME_START_SECONDS = 0.3
# --envs and --eval-episodes: the games a run makes at once. 1,024 of them take about 1.5 GB and,
# in one process, about 5 minutes to start; the runs in docs/ use at most 8 (and 10 evaluation
# games). More would be a typo, not a plan.
MAX_GAMES = 1_024
# --quantiles: QR-DQN's loss compares each of a transition's N predicted quantiles with each of
# its N target quantiles, batch x N^2 terms an update: 3.2e9 at N = 10,000 and batch 32, and
# 12.8 GB per float32 tensor of them where --no-compile makes it hold them; the dueling head's
# output layers have 512 x (18 + 1) x N weights (97 million at 10,000). QR-DQN used N = 200.
MAX_QUANTILES = 10_000
# The other integer settings are counts of agent steps or updates (--steps, --learning-starts,
# --train-every, --target-update, --eval-every, --eps-decay, --reset-every, --updates): they
# allocate nothing, and a large one only makes a run long or an event never come. What the sizes
# above (and --memory-size, --batch-size, --threads, --env-processes) cost on this machine is
# checked against its cores and memory by atari_dqn/run/machine.py, also before anything is written.
HEADS = tuple(registry.HEADS)  # atari_dqn/learn/registry.py: one module each (learn/heads/)
# How the games are played (atari_dqn/envs/atari.py's PROTOCOLS, docs/protocols.md): DeepMind's
# (Mnih et al. 2015) or Machado et al. 2018's, as Dopamine plays it.
PROTOCOL_NAMES = ("deepmind", "machado")
NETWORKS = ("nature", "impala")  # encoders; atari_dqn/learn/network.py builds them
PRECISIONS = ("fp32", "bf16")  # of the learner's network passes (learn/agent.py, Agent._fp32)
LOSSES = ("dqn", "cql", "bc")  # offline training's losses (modes/offline.py, docs/offline.md)
# Settings that were removed but that a saved run's config (config.json, a checkpoint) may still
# hold: saved_settings() drops them. --overlap, a learner thread beside the acting loop, was slower
# wherever it was measured (docs/throughput.md); every run now acts and learns in turn.
RETIRED = ("overlap",)
# CQL's alpha: Kumar et al. 2020 (Conservative Q-Learning, section 6.3 and appendix F) ran
# CQL(H) on Atari with QR-DQN and alpha = 1.0 or 4.0 (4.0 on the smaller 1% data, 1.0 on 10%);
# 1.0 is the value for the larger datasets this project's runs make.
CQL_ALPHA = 1.0


class ConfigError(ValueError):
    """A setting or a run folder is unusable; main.py prints the message and exits with status 2."""


class RunError(Exception):
    """A run cannot go on (a disk error, a non-finite loss); its last checkpoint is intact.
    main.py prints the message (one line) and exits with status 2."""


def _field(default: Any, doc: str, flag: str, **extra: Any) -> Any:
    return field(default=default, metadata={"doc": doc, "flag": flag, **extra})


# Starting values of the learning settings; a flag given explicitly wins over its preset.
PRESETS: dict[str, dict[str, Any]] = {
    # This project's defaults (the field defaults below), chosen for the whole-game score after
    # 500,000 agent steps: a QR-DQN head (200 quantiles), Double DQN, dueling, 3-step returns, a
    # memory as long as the run, a short target period and a quick epsilon decay. What was tried:
    # docs/tuning.md.
    "tuned": {},
    # Mnih et al. 2015 (Nature DQN): 1M memory, 50k random steps, target copy every 10k agent
    # steps, epsilon 1 -> 0.1 over 1M emulator frames, one-step targets, no double/dueling.
    # Adam (lr 1e-4, as CleanRL's dqn_atari) stands in for the paper's RMSProp.
    "nature": dict(memory_capacity_transitions=1_000_000, learning_starts_steps=50_000,
                   target_update_steps=10_000, eps_end=0.1, eps_decay_steps=250_000, n_step=1,
                   double=False, dueling=False, lr=1e-4, head="scalar"),
}


@dataclass(frozen=True)
class Config:
    # --- game and protocol ------------------------------------------------------------------------
    env_id: str = _field("Breakout", "Atari game: a short name (Breakout, Pong) or a gymnasium id "
                         "(BreakoutNoFrameskip-v4, ALE/Breakout-v5); played as --protocol says, "
                         "with frame skip 4 (a v5 id's own sticky actions are not used)", "--env")
    protocol: str = _field("deepmind", "how the games are played: 'deepmind' (no sticky "
                           "actions, 1-30 random no-ops and FIRE at a reset, a lost life ends the "
                           "learning episode) or 'machado' (Machado et al. 2018, as Dopamine: "
                           "sticky actions with probability 0.25 per emulator frame, no no-ops, no "
                           "FIRE, whole games as episodes), in training, evaluation and play "
                           "(docs/protocols.md); fixed for a run; offline: the dataset's",
                           "--protocol", choices=PROTOCOL_NAMES)
    envs: int = _field(1, "training games played side by side (games); one loop iteration "
                       "acts on all of them with one batched forward and makes that many agent "
                       "steps; --steps and --eval-every must be multiples of it; fixed for a "
                       "run (a resume must keep it)", "--envs")
    # --- network and head -------------------------------------------------------------------------
    network: str = _field("nature", "the encoder: 'nature' (Mnih et al. 2015: three "
                          "convolutions) or 'impala' (Espeholt et al. 2018: stages of 16, 32, 32 "
                          "channels, each a 3x3 convolution, a 3x3 max-pool with stride 2 and 2 "
                          "residual blocks; about 6x the multiply-adds)", "--network",
                          choices=NETWORKS)
    head: str = _field("quantile", "what the network predicts per action: 'scalar' (a Q-value, "
                       "Huber loss), 'quantile' (QR-DQN, Dabney et al. 2018: --quantiles "
                       "quantiles of the return, quantile Huber loss with kappa 1; acts on their "
                       "mean) or 'iqn' (implicit quantiles, Dabney et al. 2018, as Dopamine: a "
                       "cosine embedding of 64 of each sampled level tau times the encoder's "
                       "features, 64 taus for the online and 64 for the target samples, quantile "
                       "Huber loss with kappa 1; acts on the mean over 32 taus)", "--head",
                       choices=HEADS)
    n_quantiles: int = _field(200, "quantiles per action of --head quantile (count; Dopamine's "
                              "QR-DQN uses 200)", "--quantiles")
    dueling: bool = _field(True, "dueling head: value + mean-subtracted advantage", "--dueling")
    precision: str = _field("fp32", "number format of the gradient updates' network passes: "
                            "'fp32', or 'bf16' (bfloat16 autocast: convolutions and matrix "
                            "products in bfloat16, weights, gradients, optimizer, targets and "
                            "losses in float32; updates take about a quarter less time on CPUs "
                            "with AMX or AVX-512 BF16, docs/throughput.md); acting is float32 "
                            "either way",
                            "--precision", choices=PRECISIONS)
    # --- replay memory ----------------------------------------------------------------------------
    memory_capacity_transitions: int = _field(500_000, "replay memory size in transitions "
                                              "(= agent steps)", "--memory-size")
    prioritized: bool = _field(False, "prioritized replay (Schaul et al.): sample by |TD error|, "
                               "weight the loss by importance weights", "--prioritized")
    per_alpha: float = _field(0.5, "priority exponent alpha (0 = uniform)", "--per-alpha")
    per_beta_start: float = _field(0.4, "importance-weight exponent beta at step 0; rises "
                                   "linearly to 1 at --steps", "--per-beta-start")
    allow_large_memory: bool = _field(False, "start even if the replay memory, when full, "
                                      "would not fit in the RAM available now (about 7.2 KB per "
                                      "transition)", "--allow-large-memory")

    # --- learning ---------------------------------------------------------------------------------
    preset: str = _field("tuned", "starting values of the learning settings: 'tuned' (this "
                         "project's defaults for 500k agent steps) or 'nature' (Mnih et al. 2015: "
                         "1M memory, 50k random steps, target every 10k steps, epsilon to 0.1 over "
                         "250k steps, plain one-step DQN, scalar head); flags given "
                         "explicitly win",
                         "--preset", choices=tuple(PRESETS))
    batch_size: int = _field(32, "transitions per gradient update", "--batch-size")
    lr: float = _field(1e-4, "Adam learning rate", "--lr")
    adam_eps: float = _field(1.5e-4, "Adam epsilon (Rainbow/Dopamine value)", "--adam-eps")
    gamma: float = _field(0.99, "discount per agent step", "--gamma")
    n_step: int = _field(3, "agent steps summed into one return (n-step DQN; 1 = plain DQN)",
                         "--n-step")
    double: bool = _field(True, "Double DQN target: the online network picks the next action, "
                          "the target network values it", "--double")
    grad_clip_norm: float = _field(10.0, "clip the gradient's global L2 norm to this",
                                   "--grad-clip")
    munchausen: bool = _field(False, "Munchausen-DQN (Vieillard et al. 2020): the TD target "
                              "adds 0.9 * clip(0.03 * log pi(a|s), -1, 0) for the action taken "
                              "and bootstraps softly, sum_a' pi(a'|s') (q(s', a') - 0.03 * log "
                              "pi(a'|s')), pi = softmax(q / 0.03) of the target network (a "
                              "distributional head: per sample of the next state's return); "
                              "with n-step returns the bonus is the first action's; --double "
                              "then has no effect", "--munchausen")
    augment: bool = _field(False, "random shifts (DrQ) of states and next states at learn time: "
                           "edge-padded by 4 pixels, randomly cropped back to 84x84, each stack "
                           "independently", "--augment")
    # --- schedule ---------------------------------------------------------------------------------
    total_steps: int = _field(500_000, "agent steps to train for (x4 emulator frames)", "--steps")
    learning_starts_steps: int = _field(20_000, "agent steps of uniformly random play that fill "
                                        "the memory before learning and the epsilon decay start",
                                        "--learning-starts")
    train_every_steps: int = _field(4, "agent steps between gradient updates", "--train-every")
    target_update_steps: int = _field(2_000, "agent steps between hard copies of the online "
                                      "network into the target network (offline: updates)",
                                      "--target-update")
    reset_every_steps: int = _field(0, "agent steps between shrink-and-perturb resets of the "
                                    "online network (BBF, Schwarzer et al. 2023): encoder "
                                    "weights <- 0.5 * weights + 0.5 * fresh ones, heads fully "
                                    "re-initialised, their Adam state cleared; the target "
                                    "network is left alone; 0 = never", "--reset-every")
    eps_start: float = _field(1.0, "epsilon when learning starts", "--eps-start")
    eps_end: float = _field(0.01, "epsilon after the decay", "--eps-end")
    eps_decay_steps: int = _field(100_000, "agent steps (counted from --learning-starts) over "
                                  "which epsilon falls linearly from --eps-start to --eps-end",
                                  "--eps-decay")
    eval_every_steps: int = _field(50_000, "agent steps between evaluations (and checkpoints); "
                                   "offline: gradient updates", "--eval-every")
    eval_episodes: int = _field(10, "whole games (all lives) per evaluation", "--eval-episodes")
    eval_eps: float = _field(0.05, "epsilon while evaluating", "--eval-eps")
    eval_max_steps: int = _field(27_000, "cap on one evaluation game in agent steps, counted "
                                 "from the reset (27,000 = 108,000 emulator frames = 30 minutes "
                                 "of play)", "--eval-max-steps")
    # --- run folder and machine -------------------------------------------------------------------
    out_dir: str = _field("", "run folder (default: rewards/<game>-seed<seed>-<date>); never "
                          "overwritten unless resumed", "--out")
    # --help (flags.py) adds which other flags may differ from the run's: RESUME_MAY_CHANGE
    resume: str = _field("", "continue the run in this folder where it stopped", "--resume")
    seed: int = _field(0, "seed of every random number generator", "--seed")
    device: str = _field("auto", "where the networks run: auto picks cuda when available",
                         "--device", choices=DEVICES)
    threads: int = _field(2, "CPU threads for torch's learner; results are bit-reproducible "
                          "for a fixed count on one machine", "--threads")
    env_processes: int = _field(0, "child processes that step the --envs training games "
                                "(processes); 0 = step them in the trainer's own process; "
                                "the results are the same either way", "--env-processes")
    compile: bool = _field(True, "compile the networks with torch.compile (Inductor): faster "
                           "updates (docs/throughput.md); the first update and the first act "
                           "wait for compilation (about 30 s on 2 cores, seconds once cached)",
                           "--compile")
    tensorboard: bool = _field(False, "write TensorBoard scalars to <run>/tensorboard/",
                               "--tensorboard")
    render: bool = _field(False, "write the frames of evaluation NNN as PNG files to "
                          "<run>/eval_NNN/ and its best game as <run>/eval_NNN.gif", "--render")
    # --- Ape-X ------------------------------------------------------------------------------------
    actors: int = _field(0, "Ape-X actors (Ray actors, each playing --envs games with its own "
                         "epsilons) feeding one learner in this process; 0 = a one-process run; "
                         "fixed for a run (a resume must keep it)", "--actors")
    ray_address: str = _field("", "the Ray cluster of --actors: 'auto' (the one `ray start` "
                              "made on this machine) or HOST:PORT of its head; empty = start a "
                              "local Ray instance for this run", "--ray-address")
    # --- offline training -------------------------------------------------------------------------
    offline: str = _field("", "train offline from this replay snapshot (a replay-*.bin file, or "
                          "a run folder: its latest one) with no environment interaction but "
                          "evaluation; counts (--updates, --eval-every, --target-update) are "
                          "then gradient updates; '' = train online", "--offline")
    loss: str = _field("dqn", "offline loss: 'dqn' (the TD loss), 'cql' (TD loss + --cql-alpha "
                       "* (logsumexp_a Q(s, a) - Q(s, a_data)), Kumar et al. 2020) or 'bc' "
                       "(behaviour cloning: cross-entropy of the Q-values on the data's actions)",
                       "--loss", choices=LOSSES)
    cql_alpha: float = _field(CQL_ALPHA, "weight of CQL's regulariser (--loss cql; Kumar et "
                              "al. 2020 used 1.0 or 4.0 on Atari)", "--cql-alpha")
    total_updates: int = _field(125_000, "gradient updates to train for offline (the "
                                "updates of a default online run: 500,000 agent steps / "
                                "--train-every 4)", "--updates")
    # Recorded by an offline run when it starts (facts about its dataset, not settings: no
    # flag); resume checks that the file is still the same.
    offline_bytes: int = _field(0, "size of the --offline snapshot in bytes", "",
                                recorded=True)
    offline_sha256: str = _field("", "sha256 of the --offline snapshot (hex)", "",
                                 recorded=True)
    offline_transitions: int = _field(0, "sampleable transitions in the --offline "
                                     "snapshot", "", recorded=True)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{flag_of(name)} {what}, got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            if f.type == "float":
                need(math.isfinite(getattr(self, f.name)), f.name, "must be a finite number")
        for name in ("total_steps", "memory_capacity_transitions", "batch_size",
                     "train_every_steps", "target_update_steps", "n_step", "eval_every_steps",
                     "eval_episodes", "eval_max_steps", "threads", "n_quantiles", "envs"):
            need(getattr(self, name) >= 1, name, "must be a positive integer")
        for name in ("learning_starts_steps", "eps_decay_steps", "per_alpha",
                     "reset_every_steps", "env_processes", "actors"):
            need(getattr(self, name) >= 0, name, "must not be negative")
        for name in ("eps_start", "eps_end", "eval_eps", "gamma", "per_beta_start"):
            need(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        for name in ("lr", "adam_eps", "grad_clip_norm"):
            need(getattr(self, name) > 0, name, "must be positive")
        need(0 <= self.seed <= MAX_SEED, "seed", f"must be in [0, 2**{MAX_SEED.bit_length() - 1}]")
        need(self.n_step <= MAX_N_STEP, "n_step", f"must be at most {MAX_N_STEP}")
        for name in ("envs", "eval_episodes"):
            need(getattr(self, name) <= MAX_GAMES, name,
                 f"must be at most {MAX_GAMES} (games made at once, about "
                 f"{GAME_START_SECONDS:g} s each)")
        if self.streams > MAX_STREAMS:
            raise ConfigError(f"--actors {self.actors} x --envs {self.envs} is {self.streams} "
                              f"training games, more than the replay memory's {MAX_STREAMS} "
                              f"streams (one per game)")
        need(self.n_quantiles <= MAX_QUANTILES, "n_quantiles", f"must be at most {MAX_QUANTILES}")
        need(self.eval_max_steps <= MAX_EPISODE_FRAMES // FRAME_SKIP, "eval_max_steps",
             f"must be at most {MAX_EPISODE_FRAMES // FRAME_SKIP} (ALE's cap on a game)")
        # The replay memory's own rule: its newest transition's state and n-step return must fit.
        need(self.memory_capacity_transitions >= STACK + self.n_step, "memory_capacity_transitions",
             f"must be at least {STACK} + --n-step = {STACK + self.n_step} (one stacked "
             f"transition)")
        need(self.batch_size <= self.memory_capacity_transitions, "batch_size",
             "must not exceed --memory-size")
        # A loop iteration makes `envs` agent steps; evaluations (and the checkpoints after
        # them) and the run's end fall between iterations.
        for name in ("total_steps", "eval_every_steps"):
            need(getattr(self, name) % self.envs == 0, name,
                 f"must be a multiple of --envs {self.envs}")
        if self.actors:  # what modes/apex.py does not do (yet); refused, not ignored
            for name, off in (("env_processes", 0), ("reset_every_steps", 0), ("offline", "")):
                need(getattr(self, name) == off, name, "is not supported with --actors")
        need(not self.ray_address or self.actors > 0, "ray_address", "needs --actors")
        for name, choices in (("device", DEVICES), ("head", HEADS), ("protocol", PROTOCOL_NAMES),
                              ("network", NETWORKS), ("precision", PRECISIONS), ("loss", LOSSES)):
            need(getattr(self, name) in choices, name, f"must be one of {', '.join(choices)}")
        if not self.out_dir and self.resume:
            object.__setattr__(self, "out_dir", self.resume)
        need(self.cql_alpha >= 0, "cql_alpha", "must not be negative")
        need(self.total_updates >= 1, "total_updates", "must be a positive integer")
        if self.offline and self.loss == "bc" and self.prioritized:
            raise ConfigError("--prioritized cannot be used with --loss bc: behaviour cloning "
                              "has no TD error to prioritize by")

    @classmethod
    def from_flags(cls, given: dict[str, Any]) -> Config:
        """The Config of a new run from the flags typed: their preset's values, then the flags
        themselves; flags of the other kind of run (ONLINE_ONLY, OFFLINE_ONLY) are refused."""
        preset = given.get("preset", "tuned")
        if preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if given.get("offline"):
            wrong = [flag_of(name) for name in ONLINE_ONLY if name in given]
            if wrong:
                raise ConfigError(f"{', '.join(wrong)} cannot be given with --offline: it is for "
                                  f"online training (offline, --updates counts gradient updates)")
        else:
            for name in OFFLINE_ONLY:
                if name in given:
                    raise ConfigError(f"{flag_of(name)} is for offline training: give --offline "
                                      f"DATA")
        return cls(**{**PRESETS[preset], **given})

    @property
    def streams(self) -> int:
        """The replay memory's streams: one per training game, over all actors."""
        return self.envs * max(self.actors, 1)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **overrides: Any) -> Config:
        values = saved_settings(json.loads(text))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings in the saved config: {sorted(unknown)}")
        return cls(**{**values, **overrides})


# Config's sections, in the order its fields are declared: each section's first field and its
# title. A field belongs to the section it is declared in; --help (flags.py) lists the flags
# section by section (sections()).
SECTION_STARTS = {"env_id": "game and protocol", "network": "network and head",
                  "memory_capacity_transitions": "replay memory", "preset": "learning",
                  "total_steps": "schedule", "out_dir": "run folder and machine",
                  "actors": "Ape-X", "offline": "offline training"}

# Settings of one kind of run only: given with the other, they would mislead (offline there is no
# acting, no memory being filled, and --steps is not what ends the run), so a new run refuses them
# (Config.from_flags; a resume refuses any change of them, run/checkpoint.resume_config).
ONLINE_ONLY = ("total_steps", "envs", "env_processes", "learning_starts_steps",
               "train_every_steps", "memory_capacity_transitions", "eps_start", "eps_end",
               "eps_decay_steps", "reset_every_steps")
OFFLINE_ONLY = ("loss", "cql_alpha", "total_updates")


def sections() -> dict[str, list[str]]:
    """Config's field names by section title (SECTION_STARTS), in declaration order."""
    by_title: dict[str, list[str]] = {}
    title = ""
    for f in dataclasses.fields(Config):
        title = SECTION_STARTS.get(f.name, title)
        by_title.setdefault(title, []).append(f.name)
    return by_title


# Settings a resumed run may change: none of them changes what the agent learns or is scored.
RESUME_MAY_CHANGE = ("total_steps", "device", "threads", "compile", "tensorboard", "render",
                     "allow_large_memory", "resume", "out_dir", "env_processes", "ray_address",
                     # offline: more updates; the dataset from another path (its checksum must
                     # be the run's)
                     "total_updates", "offline")


# What a saved run did where its config predates a setting: the only behaviour before the flag
# existed (a run from before --head had a scalar head; the default is now the quantile head).
PREDATED = {"head": "scalar", "n_quantiles": 200, "network": "nature", "augment": False,
            "reset_every_steps": 0, "envs": 1, "env_processes": 0, "offline": "", "loss": "dqn",
            "actors": 0, "ray_address": "", "precision": "fp32", "protocol": "deepmind",
            "munchausen": False}


def saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's settings (its config.json or checkpoint) as Config takes them: the RETIRED
    ones dropped, and those the run predates set to what it did then (PREDATED)."""
    return {**PREDATED, **{name: value for name, value in saved.items() if name not in RETIRED}}


def resume_may_change_flags() -> list[str]:
    """The flags of RESUME_MAY_CHANGE, but --resume itself: what --resume's help lists. --out may
    only name the run's own folder (run/checkpoint.resume_config)."""
    return [flag_of(name) for name in RESUME_MAY_CHANGE if name != "resume"]


def flag_of(name: str) -> str:
    return next(f.metadata["flag"] for f in dataclasses.fields(Config) if f.name == name)


def default_run_dir(game: str, seed: int) -> str:
    """rewards/<game>-seed<seed>-<date>: game is a file-name friendly name
    (envs.atari.game_name)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("rewards") / f"{game}-seed{seed}-{stamp}")
