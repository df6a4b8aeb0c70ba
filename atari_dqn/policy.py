"""load(path): a trained Q-network, ready to act, from a run folder or a model file of any run.

    from atari_dqn import policy
    net = policy.load("rewards/breakout-seed0")        # or .../model_007.pt, final_model.pt
    q = net(frames)                                    # uint8 (B, 4, 84, 84) -> (B, net.n_actions)

What it accepts:
  a run folder        its final_model.pt if there is one, else its model_NNN.pt with the largest NNN
  a model file        final_model.pt or model_NNN.pt: a plain state_dict of the online network
                      (float32, or float16: cast to float32)
  a checkpoint.pt     the online network inside it (its own config names the architecture)
The architecture (encoder, head, dueling) is read from the config.json of the file's folder (a
run folder's); settings that config lacks (runs from before --head and --network) are those runs'
only choices, a scalar head on the Nature CNN. Without a config.json it is inferred from the
state_dict's keys and shapes (atari_dqn/learn/network.py lists them; the head is the registered one
whose OWN_KEYS the weights have, the most of them). n_actions comes from the shapes.
An IQN network's Q-values are the mean over 32 fixed taus (atari_dqn/learn/heads/iqn.py):
net(frames) is a pure function of the weights and the frames, like every other head's.

Anything else (a missing path, a folder without models, a file that is no model, weights that do
not fit the architecture, a network whose input is not a state of STACK = 4 stacked 84x84 frames)
raises PolicyLoadError with a one-line message.

save_half() writes a model as float16 weights, half the bytes (a committed reference run's
final_model.pt must stay under 15 MB; a dueling quantile network is 15.2 MB in float32):

    python -m atari_dqn.policy half RUN_OR_MODEL OUT.pt
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atari_dqn.cli import run_tool
from atari_dqn.config import STACK, ConfigError, saved_settings
from atari_dqn.learn import registry
from atari_dqn.learn.agent import epsilon_greedy
from atari_dqn.learn.network import QNetwork
from atari_dqn.learn.parts import Head
from atari_dqn.run.checkpoint import CONFIG, FINAL_MODEL, saved_network
from atari_dqn.run.files import DiskError, atomic_write

MODEL_NAME = re.compile(r"^model_(\d+)\.pt$")
COMPILED_PREFIX = "_orig_mod."  # keys of a module wrapped by torch.compile() (not in place)


class PolicyLoadError(ValueError):
    """The path names no loadable model; the message says why, in one line."""


def model_file(path: str | Path) -> Path:
    """The model file `path` names: itself, or a run folder's final or newest model."""
    path = Path(path)
    if path.is_dir():
        if (path / FINAL_MODEL).is_file():
            return path / FINAL_MODEL
        numbered = [(int(m.group(1)), p) for p in path.iterdir()
                    if (m := MODEL_NAME.match(p.name)) and p.is_file()]
        if not numbered:
            raise PolicyLoadError(f"{path}: no {FINAL_MODEL} or model_NNN.pt in this folder")
        return max(numbered)[1]
    if not path.exists():
        raise PolicyLoadError(f"{path}: no such file or folder")
    if not path.is_file():
        raise PolicyLoadError(f"{path}: not a file or folder")
    return path


def _read(file: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except OSError as e:
        raise PolicyLoadError(f"{file}: cannot read it ({e.strerror or e})") from None
    except Exception:  # a foreign or damaged file, whatever the loader's complaint
        # Not torch's words: for a pickle of other objects they advise weights_only=False,
        # which runs whatever code the file holds.
        raise PolicyLoadError(f"{file}: not a model file, or a damaged one") from None


def _weights_and_config(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The online network's state_dict (float32) and the run's settings, if known: a model
    file's, or a checkpoint's (read by checkpoint.saved_network, through its migrations)."""
    loaded = _read(file)
    try:
        saved = saved_network(loaded)
    except ConfigError as e:
        raise PolicyLoadError(f"{file}: {e}") from None
    config = None
    if saved is not None:
        loaded, config = saved
    if not (isinstance(loaded, dict) and loaded
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())):
        raise PolicyLoadError(f"{file}: not a model file (no state_dict of tensors)")
    state = {k.removeprefix(COMPILED_PREFIX): v.float() if v.is_floating_point() else v
             for k, v in loaded.items()}
    if config is None and (file.parent / CONFIG).is_file():
        try:
            config = json.loads((file.parent / CONFIG).read_text())
        except (OSError, ValueError) as e:
            raise PolicyLoadError(f"{file.parent / CONFIG}: unreadable ({e})") from None
        if not isinstance(config, dict):
            raise PolicyLoadError(f"{file.parent / CONFIG}: not a run's settings")
    return state, config


def _weights_head(state: dict[str, torch.Tensor]) -> str:
    """The registered head whose OWN_KEYS these weights have (the most of them: a scalar head
    has none of its own)."""
    heads = registry.head_classes()
    fitting = [name for name, head in heads.items() if all(k in state for k in head.OWN_KEYS)]
    return max(fitting, key=lambda name: len(heads[name].OWN_KEYS))


def architecture(state: dict[str, torch.Tensor],
                 config: dict[str, Any] | None) -> tuple[type[Head], int, dict[str, Any]]:
    """(the head class, n_actions, the settings its network() takes) of these weights: from the
    run's settings when known, else from the state_dict's keys and shapes."""
    # the first convolution's weight, (out, in_channels, k, k), names the encoder
    first_conv = {"nature": "features.0.weight", "impala": "features.0.conv.weight"}
    inferred_encoder = next((name for name, key in first_conv.items() if key in state), None)
    if inferred_encoder is None:
        raise PolicyLoadError("not a Q-network of this project (no features.0 layer)")
    weights_head = _weights_head(state)
    implied = registry.head_class(weights_head).settings_from_weights(state)
    if config is None:
        settings = {"network": inferred_encoder, "dueling": "value.0.weight" in state,
                    "head": weights_head, **implied}
    else:
        settings = saved_settings(config)  # a run from before --head had a scalar head
        if settings["head"] != weights_head or any(settings.get(k) != v
                                                   for k, v in implied.items()):
            # before building it: a config's n_quantiles of 10**12 would be terabytes
            said = ", ".join(f"{k} {settings.get(k)!r}" for k in implied)
            have = ", ".join(f"{k} {v!r}" for k, v in implied.items())
            raise PolicyLoadError(
                f"the weights do not fit the run's settings (head {settings['head']!r}"
                f"{', ' + said if said else ''}; the weights are a {weights_head!r} head's"
                f"{' with ' + have if have else ''})")
    head = registry.head_class(weights_head)  # the settings' head, checked above
    per_action = head.outputs_per_action(settings)
    output = state.get("advantage.2.weight", state.get("head.2.weight"))
    if output is None or output.ndim != 2 or output.shape[0] % per_action:
        raise PolicyLoadError("not a Q-network of this project (no head.2 or advantage.2 layer)")
    if output.shape[0] < per_action:
        raise PolicyLoadError("not a Q-network of this project (no actions)")
    # The network acts on states, STACK frames each, as the replay memory stacks them; the
    # first convolution's weight (out, in_channels, k, k) says what it was trained on. Other
    # shapes than the input's are checked by load_state_dict against the network's own.
    conv = state[first_conv[inferred_encoder]]
    if conv.ndim != 4:
        raise PolicyLoadError(f"not a Q-network of this project ({first_conv[inferred_encoder]} "
                              f"of shape {tuple(conv.shape)} is no convolution)")
    if conv.shape[1] != STACK:
        raise PolicyLoadError(f"the network takes {conv.shape[1]} input channels, but a state "
                              f"is {STACK} stacked frames")
    return head, output.shape[0] // per_action, {**settings, "dueling": bool(settings["dueling"])}


def load(path: str | Path, device: str | torch.device = "cpu") -> QNetwork:
    """The online network of a run folder or model file, in eval mode, without gradients:
    uint8 (B, 4, 84, 84) -> Q-values (B, n_actions); a distributional head's are its samples'
    mean (IQN: over its fixed taus)."""
    file = model_file(path)
    state, config = _weights_and_config(file)
    try:
        head, n_actions, settings = architecture(state, config)
    except PolicyLoadError as e:
        raise PolicyLoadError(f"{file}: {e}") from None
    arch = {"head": settings["head"], "n_actions": n_actions, "dueling": settings["dueling"],
            "network": settings["network"], **head.settings_from_weights(state)}
    try:
        network = head.network(n_actions, settings)
    except (TypeError, ValueError, KeyError) as e:  # e.g. a config.json naming an unknown encoder
        raise PolicyLoadError(f"{file}: unusable architecture {arch} ({e})") from None
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        raise PolicyLoadError(f"{file}: the weights do not fit the architecture {arch} "
                              f"({str(e).strip().splitlines()[0]})") from None
    return network.to(device).eval().requires_grad_(False)




def save_half(path: str | Path, out: str | Path) -> Path:
    """Write the model `path` names (as load() finds it) to `out` as a plain state_dict with
    float16 weights; returns out. The model is loaded first, so a path load() refuses raises
    PolicyLoadError and nothing is written. load() reads the result back as float32: put it in a
    folder with the run's config.json, or it is read as the architecture its keys imply. An
    existing `out` is never replaced (PolicyLoadError): float32 weights are not lost that way."""
    out = Path(out)
    if out.exists():
        raise PolicyLoadError(f"{out}: already exists; write the float16 model elsewhere")
    network = load(path)
    # weights only: buffers (a quantile head's levels) are exact values, kept float32
    weights = dict(network.named_parameters())
    state = {k: v.half() if k in weights and v.is_floating_point() else v
             for k, v in network.state_dict().items()}
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atari_dqn.policy",
                                     description="Trained models: write one as float16 weights.")
    commands = parser.add_subparsers(dest="command", required=True)
    half = commands.add_parser("half", help="save a model with float16 weights (half the bytes)")
    half.add_argument("model", help="a run folder, model file or checkpoint.pt")
    half.add_argument("out", help="the .pt file to write")
    args = parser.parse_args(argv)
    try:
        out = save_half(args.model, args.out)
    except (PolicyLoadError, DiskError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


class Actor:
    """Acts epsilon-greedily with a loaded network: what evaluate() needs of an agent."""

    def __init__(self, network: QNetwork) -> None:
        self.network = network
        self.n_actions = network.n_actions
        self.device = next(network.parameters()).device

    def act_batch(self, states: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        return epsilon_greedy(self.network, states, epsilon, rng, self.device)


if __name__ == "__main__":
    run_tool(main)
