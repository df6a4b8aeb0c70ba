"""The seed streams (atari_dqn/seeds.py): distinct but for the documented shared pair, and at
the values today's runs were seeded with."""

from __future__ import annotations

from itertools import combinations

from atari_dqn import seeds


def test_streams_differ_unless_their_sharing_is_documented():
    for (a, x), (b, y) in combinations(seeds.STREAMS.items(), 2):
        if x == y:
            assert frozenset({a, b}) in seeds.SHARED, f"{a} and {b} are both stream {x}"
    for pair in seeds.SHARED:  # no stale entry: each pair does share a value
        a, b = sorted(pair)
        assert seeds.STREAMS[a] == seeds.STREAMS[b]


def test_the_table_names_every_stream_constant_once():
    constants = {name: value for name, value in vars(seeds).items() if name.isupper()
                 and isinstance(value, int)}
    assert constants == seeds.STREAMS


def test_streams_keep_the_values_recorded_runs_were_seeded_with():
    # a change here changes every run's results: a new stream takes a new number instead
    assert seeds.STREAMS == {"AUGMENT": 1, "RESET": 2, "APEX_ACTORS": 3, "OFFLINE_SAMPLE": 3,
                             "IQN_TAUS": 4}
