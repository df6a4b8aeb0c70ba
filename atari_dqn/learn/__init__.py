"""The learner's parts: heads (atari_dqn/learn/heads/), loss terms (atari_dqn/learn/losses/), their
interfaces (parts.py) and the one list of each (registry.py). Importing this package imports no
torch: config.py reads the registry."""
