#!/usr/bin/env bash
# One device call for text-to-4D, prepared ahead (the GPU is lent for minutes):
#   1. train the embedded toy prior (scene4d prior train-toy) on the GPU, data rendered by CPU workers,
#      with a time budget; the prior folder comes back as $OUT/toy_prior.tar;
#   2. SDS step time and peak memory of every diffusers prior at real size (random weights, fp16);
#   3. toy-prior SDS gradient, CPU vs CUDA (fp32), and the cost of generate steps on the GPU.
#
#   bash bench/gpu_generate.sh [TRAIN_SECONDS] [BUDGET_SECONDS]
#
# Python packages missing on the machine (diffusers) are installed from .whl/ when it exists.
set -u
TRAIN=${1:-360}
BUDGET=${2:-570}
. "$(dirname "$0")/gpu_common.sh"
stage "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys, diffusers, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  nproc; } 2>&1 | tee -a "$LOG"

stage "toy prior training, ${TRAIN} s budget"
WORKERS=$(( $(nproc) - 2 ))
# (the scene4d CLI needs tyro, which the machine lacks: the same function is called directly)
timeout $(( TRAIN + 60 )) python3 bench/gpu_toy.py train /tmp/toy "$TRAIN" "$WORKERS" > "$OUT/train.log" 2>&1
echo "train rc=$?" | tee -a "$LOG"
tr '\r' '\n' < "$OUT/train.log" | grep -E "steps cut|trained|Error|error|Traceback" | tail -5 | tee -a "$LOG"
tr '\r' '\n' < "$OUT/train.log" | grep "train-toy" | tail -1 | tee -a "$LOG"
if [ -d /tmp/toy/prior ]; then
  tar -C /tmp/toy -cf "$OUT/toy_prior.tar" prior && cat /tmp/toy/prior/training.json | head -30 | tee -a "$LOG"
fi

stage "samples of the trained prior (GPU)"
timeout 60 python3 bench/gpu_toy.py sample /tmp/toy/prior "$OUT" 2>&1 | tail -4 | tee -a "$LOG"

stage "toy SDS gradient CPU vs CUDA, generate step cost on the GPU"
if [ "$(left)" -gt 25 ]; then
  timeout $(( $(left) - 5 )) python3 bench/gpu_toy.py parity /tmp/toy/prior 2>&1 | tail -12 | tee -a "$LOG"
fi
stage "done"
