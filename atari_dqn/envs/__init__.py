"""The Atari games (atari.py): the protocols (deepmind, machado), one game, N games side by side,
games in child processes, evaluation games, snapshot and restore. The only place that builds
games. May import config.py; never run/ or modes/."""
