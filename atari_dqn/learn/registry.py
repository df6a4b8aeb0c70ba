"""The one list of heads and the one list of loss terms: name -> "module:Class".

Adding a head or a loss term is its module and one line here. This module imports neither torch
nor the parts: config.py takes --head's choices from HEADS, and a part's module is imported when
it is first asked for (head_class, loss_terms).
"""

from __future__ import annotations

import importlib
from typing import Any

HEADS = {
    "scalar": "atari_dqn.learn.heads.scalar:ScalarHead",
    "quantile": "atari_dqn.learn.heads.quantile:QuantileHead",
    "iqn": "atari_dqn.learn.heads.iqn:IQNHead",
}
# In this order the terms are built and called; a term whose `replaces` names another takes its
# place (munchausen: td's TD loss with its own target).
LOSS_TERMS = {
    "td": "atari_dqn.learn.losses.td:TD",
    "cql": "atari_dqn.learn.losses.cql:CQL",
    "bc": "atari_dqn.learn.losses.bc:BehaviourCloning",
    "munchausen": "atari_dqn.learn.losses.munchausen:Munchausen",
}


def _load(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def head_class(name: str) -> Any:
    """The head class registered as `name` (a KeyError names the heads there are)."""
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}: one of {', '.join(HEADS)}")
    return _load(HEADS[name])


def head_classes() -> dict[str, Any]:
    """Every registered head class, by name."""
    return {name: _load(where) for name, where in HEADS.items()}


def loss_terms(config: Any) -> list[Any]:
    """The loss terms of a run's settings, built, in LOSS_TERMS order: those whose wanted(config)
    says so, less those another wanted term replaces."""
    wanted = {name: cls for name, cls in ((name, _load(where)) for name, where in
                                           LOSS_TERMS.items()) if cls.wanted(config)}
    replaced = {cls.replaces for cls in wanted.values()}
    return [cls(config) for name, cls in wanted.items() if name not in replaced]
