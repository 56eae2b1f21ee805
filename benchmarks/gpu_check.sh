#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU and CuPy (pip install cupy-cuda12x): the
# GPU tests, the CuPy stand-in tests, the CUDA benchmark, the headline and two epochs of
# Hinton's 4 x 2000. MNIST is read from $HINTON_MNIST_DIR (default: ./.mnist); logs and
# JSON go under $OUT (default: ./gpu_out).
#     HINTON_MNIST_DIR=~/mnist bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
export HINTON_MNIST_DIR="${HINTON_MNIST_DIR:-$PWD/.mnist}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -rs tests/test_gpu.py tests/test_device.py tests/test_numerics.py 2>&1 | tee "$OUT/tests.log"
python3 benchmarks/bench_ff.py --device cuda --json "$OUT/bench_cuda_784-500-500.json" 2>&1 | tee "$OUT/bench.log"
python3 benchmarks/bench_ff.py --device cuda --layer-sizes 784,2000,2000,2000,2000 --train-subset 10000 \
    --warmup 1 --json "$OUT/bench_cuda_4x2000.json" 2>&1 | tee -a "$OUT/bench.log"
python3 ff_label_in_input.py --device cuda --seed 0 --n-epochs 30 --lr 0.003 --layer-sizes 784,500,500 \
    --eval-subset 2000 --full-test --metrics "$OUT/headline_cuda.json" 2>&1 | tail -4 | tee "$OUT/headline.log"
python3 ff_label_in_input.py --device cuda --recipe hinton --layer-sizes 784,2000,2000,2000,2000 \
    --n-epochs 2 --eval-subset 1000 --metrics "$OUT/hinton_4x2000_2ep_cuda.json" 2>&1 | tail -4 | tee "$OUT/hinton.log"
