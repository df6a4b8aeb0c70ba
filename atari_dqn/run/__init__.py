"""The one run lifecycle that every mode uses (lifecycle.py: the run folder and its lock, resume,
the evaluation schedule, signals, the stop and NaN policies) and what it is made of: checkpoints
(checkpoint.py, one registry of parts' state()/restore(), versioned), the gradient updates
(updates.py), evaluation (evaluate.py), the run folder's files (files.py, curve.py,
episodes.py), progress and telemetry (progress.py, telemetry.py) and the machine's limits
(machine.py). May import envs/, learn/, config.py and replay.py; never modes/."""
