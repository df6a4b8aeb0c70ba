"""Builds the replay memory's C++ core (csrc/) as the extension atari_dqn._replay."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

replay_extension = Pybind11Extension(
    "atari_dqn._replay",
    sorted(glob("csrc/*.cc")),
    include_dirs=["csrc"],
    cxx_std=17,
    # Portable optimisation only: no -march=native, the wheel must run on any x86-64 / arm64.
    extra_compile_args=["-O3"],
)

setup(ext_modules=[replay_extension], cmdclass={"build_ext": build_ext})
