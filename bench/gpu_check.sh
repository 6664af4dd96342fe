#!/usr/bin/env bash
# Inference benchmark on a CUDA host (target: >= 50,000 seq/s end to end on one H200).
#
# Installs nothing: run it from a checkout whose .venv has a CUDA build of torch and the
# project installed (`pip install -e .`). Writes bench/results/inference-cuda*.json and
# prints one table per run. About 2-4 minutes on an H200 host; each run is independent, so
# a failure in a variant does not lose the main figure.
#
#   bench/gpu_check.sh            # all runs
#   RUNS=main bench/gpu_check.sh  # just the headline run
set -euo pipefail
cd "$(dirname "$0")/.."
YUQING=${YUQING:-.venv/bin/yuqing}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-all}
export HF_HUB_OFFLINE=1

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: this script needs a GPU"
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

cores=$(nproc)
procs=$(( cores > 4 ? cores - 2 : 2 ))   # leave a core each for the event loop and forward thread

# 1. Headline: raw strings in, scores out; tokenisation in processes (the GIL, not the
#    tokenizer, is the wall with threads). 200k texts for the worker, fewer for the slow
#    baselines (the pipeline one-per-call runs ~300 seq/s).
"$YUQING" bench inference --device cuda --n 200000 --n-batched 20000 --n-single 2000 \
  --tokenizer-processes "$procs" --output bench/results/inference-cuda.json

[ "$RUNS" = main ] && exit 0

# 2. Same with tokenizer threads instead of processes (how much the GIL costs).
"$YUQING" bench inference --device cuda --n 100000 --n-batched 5000 --n-single 300 \
  --tokenizer-threads 8 --no-ceiling --output bench/results/inference-cuda-threads.json || true

# 3. torch.compile(mode="reduce-overhead") = CUDA graphs for the forward pass; keep it only
#    if it beats run 1 (YUQING_CLASSIFY_COMPILE=reduce-overhead turns it on in the product).
"$YUQING" bench inference --device cuda --n 100000 --n-batched 5000 --n-single 300 \
  --tokenizer-processes "$procs" --compile-mode reduce-overhead \
  --output bench/results/inference-cuda-compile.json || true

# 4. Bigger, tighter batches: more rows per launch, less padding per batch.
"$YUQING" bench inference --device cuda --n 100000 --n-batched 5000 --n-single 300 \
  --tokenizer-processes "$procs" --max-batch 2048 --max-tokens 131072 --max-padding 0.2 \
  --no-ceiling --output bench/results/inference-cuda-b2048.json || true
