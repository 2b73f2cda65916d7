#!/usr/bin/env bash
# The GPU checks of the training engine in one run on a lent H100 (issue 3): (a) throughput of the engine
# against a plain fp32 loop, (b) a 240 s x2 training on T91 + 110 BSD200 images, scored on Set5 x2.
# Before the run, on the development machine:
#   mkdir -p .device/data && cp -r ../shared/data/{T91,BSD200,Set5} .device/data/     # git-ignored, ~60 MB
#   wheels for what the device image lacks (jsonschema and its dependencies) into .whl (device README)
# Then: run(command="bash bench/gpu_check.sh", carry=[".device", ".whl"], timeout_s=600)
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" BSR_SHARED=.device PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m bench.train_throughput --batch 64 --steps 300 --warmup 40 2>&1 | tee "$out/throughput.txt"
python3 -m bench.train_budget --seconds 240 --bsd200 110 2>&1 | tee "$out/budget.txt"
