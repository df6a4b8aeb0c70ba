"""Where transitions come from, one module per mode, each a Source on the one lifecycle in run/:
one_process.py (games in this process or its children), apex.py (Ape-X: Ray actors, with
rate_limiter.py holding the actors' steps to the learner's updates) and offline.py (a fixed
dataset); memory.py makes the fresh replay memory of an online run (one_process, apex). May import
envs/, learn/, run/ and the top level (config, seeds, replay, dataset); nothing below imports
modes/."""
