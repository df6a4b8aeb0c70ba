"""The C++ core's own tests (csrc/tests/core_test.cc), built and run under AddressSanitizer
and UndefinedBehaviorSanitizer: no leak, overflow, use-after-free or UB in the core."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_SOURCES = [p for p in sorted((ROOT / "csrc").glob("*.cc")) if p.name != "bindings.cc"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_core_tests_pass_under_address_and_undefined_sanitizers(tmp_path):
    binary = tmp_path / "core_test"
    flags = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
             "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror"]
    build = subprocess.run(
        ["g++", *flags, f"-I{ROOT / 'csrc'}", str(ROOT / "csrc/tests/core_test.cc"), *map(str, CORE_SOURCES),
         "-o", str(binary)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(binary)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith(" passed, 0 failed")
