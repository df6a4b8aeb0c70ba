"""The C++ core's own tests (csrc/tests/core_test.cc), built and run under AddressSanitizer and
UndefinedBehaviorSanitizer (no leak, overflow, use-after-free or UB in the core), and under
ThreadSanitizer (no data race while one thread appends and another samples and updates priorities)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_SOURCES = [p for p in sorted((ROOT / "csrc").glob("*.cc")) if p.name != "bindings.cc"]
COMMON_FLAGS = ["-std=c++17", "-O1", "-g", "-pthread", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror"]

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


def build(tmp_path, sanitizer_flags):
    binary = tmp_path / "core_test"
    result = subprocess.run(
        ["g++", *COMMON_FLAGS, *sanitizer_flags, f"-I{ROOT / 'csrc'}", str(ROOT / "csrc/tests/core_test.cc"),
         *map(str, CORE_SOURCES), "-o", str(binary)],
        capture_output=True, text=True, timeout=600,
    )
    return binary, result


def run_and_check(binary, tmp_path, env):
    run = subprocess.run([str(binary)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, **env))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith(" passed, 0 failed")
    return run


@needs_gxx
def test_core_tests_pass_under_address_and_undefined_sanitizers(tmp_path):
    binary, result = build(tmp_path, ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"])
    assert result.returncode == 0, result.stderr
    run_and_check(binary, tmp_path, {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                                     "UBSAN_OPTIONS": "print_stacktrace=1"})


def thread_sanitizer_works(tmp_path):
    """Whether this compiler can build and run a threaded program under TSan (not every
    toolchain ships libtsan, and some kernels' address layouts break its runtime)."""
    probe = tmp_path / "probe.cc"
    probe.write_text("#include <thread>\nint x;\nint main() { std::thread t([] { x = 1; }); t.join(); return x - 1; }\n")
    built = subprocess.run(["g++", "-std=c++17", "-pthread", "-fsanitize=thread", str(probe), "-o",
                            str(tmp_path / "probe")], capture_output=True, timeout=300)
    return built.returncode == 0 and subprocess.run([str(tmp_path / "probe")], capture_output=True,
                                                    timeout=60).returncode == 0


@needs_gxx
def test_core_tests_pass_under_thread_sanitizer(tmp_path):
    if not thread_sanitizer_works(tmp_path):
        pytest.skip("this g++ cannot build or run -fsanitize=thread programs")
    binary, result = build(tmp_path, ["-fsanitize=thread"])
    assert result.returncode == 0, result.stderr
    run = run_and_check(binary, tmp_path, {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"})
    assert "ThreadSanitizer" not in run.stderr, run.stderr
