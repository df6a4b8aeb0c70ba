"""Atari DQN: a Nature-CNN DQN trainer with a C++ replay memory."""
