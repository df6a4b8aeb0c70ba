"""atari_dqn.cli: the tools' shared command-line behaviour."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_tool_whose_reader_has_gone_ends_without_a_traceback():
    # `summary ... --table | head -0`: the reader closes the pipe before the tool writes its
    # table, so the tool's write meets a closed pipe (EPIPE).
    runs = sorted(str(p) for p in (ROOT / "rewards").glob("qr-*"))
    tool = subprocess.Popen([sys.executable, "-m", "atari_dqn.summary", *runs, "--table"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tool.stdout.close()
    stderr = tool.stderr.read().decode()
    tool.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert tool.returncode != 0  # it did not write its table
