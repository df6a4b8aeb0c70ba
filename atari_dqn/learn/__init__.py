"""What learns: the networks (network.py, the encoders), the heads (heads/), the loss terms
(losses/), their interfaces (parts.py) and the one list of each (registry.py), the agent that
acts, learns and syncs (agent.py), the augmentation (augment.py) and the schedules of epsilon,
beta and updates (schedule.py). May import config.py and seeds.py; never run/ or modes/.
Importing this package imports no torch: config.py reads the registry."""
