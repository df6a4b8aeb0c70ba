"""Atari DQN: a Nature-CNN DQN trainer with a C++ replay memory.

The top level is the public face: config.py (the settings), replay.py (the memory's Python API
over the _replay extension), policy.py (load a trained network), seeds.py (the seed streams),
main.py's flags (flags.py), and the commands play, summary, suite, dataset and inspect_run
(python -m atari_dqn.<name>).
Data flows one way, envs -> agent.act -> memory.append -> memory.sample -> agent.learn ->
evaluation, through four folders:

  envs/    the Atari games and their protocols (atari.py)
  learn/   what learns: network, heads, loss terms, the agent, augmentation, schedules
  run/     the one lifecycle every mode uses: run folder, resume, checkpoints, evaluation,
           the gradient updates, progress, the machine's limits
  modes/   where transitions come from: one_process, apex (Ray actors, rate limiter), offline

learn/ and envs/ never import run/ or modes/; run/ never imports modes/; nothing in the package
imports main.py, whose flags live in flags.py (tests/test_package.py checks all three).
"""
