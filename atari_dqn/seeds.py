"""The seed streams: every generator a run seeds from --seed, beside torch's global one, numpy's
epsilon rng and the replay memory (all three seeded with --seed itself), draws its seed from
numpy's SeedSequence([seed, STREAM, ...]), one stream per purpose.

The values below are what today's runs use: changing one changes every run's results, so a new
stream takes a new number, and no two streams may share one (tests/test_seeds.py checks it)
unless SHARED says why they may. Found when they were gathered here:

  - APEX_ACTORS and OFFLINE_SAMPLE are both 3. Allowed: a run is one mode, Ape-X (modes/apex.py) or
    offline (modes/offline.py), never both, so the two never seed generators of the same run. Kept
    at 3 so that existing runs reproduce.
  - evaluate.evaluation_seeds(seed, index) draws from SeedSequence([seed, index]), the same
    entropy as SeedSequence([seed, STREAM]) for index == STREAM: evaluation 1's game seed is
    AUGMENT's torch seed, evaluation 4's is IQN_TAUS's. Not a stream of this table (it is keyed by
    the evaluation's number); the generators differ in kind (the emulators' reset seed against a
    torch.Generator) and purpose, so nothing correlates that a result depends on. Kept as it is:
    evaluation seeds are part of every run's recorded rewards.txt.
"""

from __future__ import annotations

AUGMENT = 1         # the augmentation's torch.Generator (learn/agent.py)
RESET = 2           # a shrink-and-perturb reset's fresh weights, with the step (learn/agent.py)
APEX_ACTORS = 3     # an Ape-X actor's games and epsilon draws, with its index (modes/apex.py)
OFFLINE_SAMPLE = 3  # an offline run's batch of update u, with u (modes/offline.py); see SHARED
IQN_TAUS = 4        # IQN's learning taus' torch.Generator (learn/heads/iqn.py)

STREAMS = {"AUGMENT": AUGMENT, "RESET": RESET, "APEX_ACTORS": APEX_ACTORS,
           "OFFLINE_SAMPLE": OFFLINE_SAMPLE, "IQN_TAUS": IQN_TAUS}
# Pairs of streams allowed one value, and why (the module's doc says more).
SHARED = {frozenset({"APEX_ACTORS", "OFFLINE_SAMPLE"}):
          "one run is Ape-X or offline, never both: the two never seed the same run"}
