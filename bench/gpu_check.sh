#!/usr/bin/env bash
# Every GPU check of the training engine in one call of a lent GPU machine: about 7.5 minutes, 9.5 at most
# (each stage has a timeout), so that a retry fits a 15-minute window:
#   1. smoke (~1-2 min): the paper model trained, checkpointed, resumed and evaluated through the CLI on CUDA
#      with compile, bf16 and channels_last (bench/gpu_smoke.py); the script stops there if it fails. A cold
#      compile of the paper model took 79 s on 2 CPU cores here, hence its 180 s timeout;
#   2. throughput: the engine at batch 64 against a plain fp32 eager loop at batch 16, same run
#      (bench/train_throughput.py; targets >= 1200 samples/s and >= 7x);
#   3. a 240 s x2 training on T91 + 110 BSD200 images, scored on Set5 x2 (bench/train_budget.py; target
#      >= 37.40 dB; a plain-PyTorch EDSR-baseline reached 37.37 dB).
#
# The GPU machine sees only the repository, and its image (torch 2.11, Python 3.12) lacks jsonschema.
# Prepare once, on the development machine, with the shared data beside the checkout:
#   bash bench/gpu_check.sh prepare
# It fills the git-ignored .device/ (checked to stay under 60 MiB): .device/data/{Set5,T91}/HR, the first 110
# images of BSD200 in .device/data/BSD200/HR, and .device/wheels with the cp312 wheels of jsonschema 4.26.0,
# jsonschema-specifications 2025.9.1, referencing 0.37.0 and rpds-py 0.30.0 (attrs is in the image), and safetensors 0.8.0 (abi3), which
# the run folder's model is written and read with.
# Then call the device tool: run(command="bash bench/gpu_check.sh", carry=[".device"], timeout_s=540).
# Each stage's output is also saved under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  shared=${BSR_SHARED:-../shared}/data
  rm -rf .device && mkdir -p .device/data/BSD200/HR .device/wheels
  cp -r "$shared/Set5" "$shared/T91" .device/data/
  ls "$shared/BSD200/HR" | sort | head -110 | while read -r f; do cp "$shared/BSD200/HR/$f" .device/data/BSD200/HR/; done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .device/wheels \
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0 safetensors==0.8.0
  size=$(du -sm .device | cut -f1)
  echo "prepared .device: ${size} MiB ($(find .device/data -name '*.png' | wc -l) images, $(ls .device/wheels | wc -l) wheels)"
  [ "$size" -le 60 ] || { echo "gpu_check: .device is ${size} MiB, over the 60 MiB budget" >&2; exit 1; }
  exit 0
fi

out=${OUT:-/tmp/bsr_gpu_check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl
export PYTHONPATH="$PWD:/tmp/site" BSR_SHARED=.device PYTHONUNBUFFERED=1
stage() { echo "== $1 (at ${SECONDS} s)"; }

stage versions
python3 -c "import torch, triton; print(f'torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda},', torch.cuda.get_device_name())" | tee "$out/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/versions.txt"

stage smoke
if ! timeout 180 python3 -m bench.gpu_smoke 2>&1 | tee "$out/smoke.txt"; then
  echo "gpu_check: the smoke stage failed (see above); throughput and budget not run"
  exit 1
fi

stage throughput
timeout 110 python3 -m bench.train_throughput --batch 64 --steps 150 --warmup 20 2>&1 | tee "$out/throughput.txt" || echo "gpu_check: the throughput stage failed"

stage budget
timeout 280 python3 -m bench.train_budget --seconds 240 --bsd200 110 2>&1 | tee "$out/budget.txt" || echo "gpu_check: the budget stage failed"
stage done
