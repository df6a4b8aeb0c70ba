#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a lent GPU machine, whose image has torch
# (2.11, Python 3.12) but not gymnasium, ale-py or farama-notifications, and reaches no registry:
#   1. the C++ extension, built there for its Python;
#   2. the CUDA tests (tests/test_cuda.py);
#   3. agent steps/s of the defaults, --head iqn and --munchausen on the GPU (bench/arms.py:
#      --device auto picks it), and each one's cost per agent step: issue 35's 1.3x rule there.
#
#     bash bench/device_check.sh --fetch-wheels    # here, once: their wheels into .whl/ (3.5 MB)
#     bash bench/device_check.sh                   # there, from the repository root, carrying .whl
#
# Logs go to $OUT (the device tool's folder that comes back), else to device-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(gymnasium==1.4.0 ale-py==0.12.1 farama-notifications==0.0.6)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms+=(--platform "$p")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "${WHEELS[@]}"
    ls -l .whl
    exit 0
fi

out="${OUT:-device-check}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$out/gpu.txt"

python3 setup.py -q build_ext --inplace -j 16 > "$out/build.log" 2>&1
# each check runs whatever the one before gave; its exit status ends its log
timeout 180 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py 2>&1 \
    | tee "$out/cuda_tests.txt" || echo "exit status $?" | tee -a "$out/cuda_tests.txt"
timeout 420 python3 bench/arms.py --arms defaults "--head iqn" " --munchausen" --base defaults \
    --repeats 2 2>&1 | tee "$out/arms_gpu.txt" || echo "exit status $?" | tee -a "$out/arms_gpu.txt"
