"""Train a DQN on an Atari game: python main.py --help. Flags -> Config (atari_dqn/flags.py) ->
the chosen mode's train(config)."""

from __future__ import annotations

import sys

from atari_dqn.config import ConfigError, RunError
from atari_dqn.flags import build_parser, config_from_flags


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = vars(parser.parse_args(argv))  # argparse itself exits 2 on an unknown flag
    try:
        config = config_from_flags(given)
        if config.offline:
            from atari_dqn.modes.offline import train_offline

            result = train_offline(config, given)
        elif config.actors:
            from atari_dqn.modes.apex import train_distributed

            result = train_distributed(config)
        else:
            from atari_dqn.modes.one_process import train

            result = train(config)
    except (ConfigError, RunError) as e:  # RunError: a disk error or a non-finite loss
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    # Stopped by a signal: the conventional 128 + signal number, after the checkpoint.
    return 128 + result.signum if result.signum else 0


if __name__ == "__main__":
    sys.exit(main())
