#!/usr/bin/env bash
# One device call to teach the embedded toy prior motion, prepared ahead (the GPU is lent for minutes).
# The shipped prior ignores the scene time (README, "Where the toy prior stands"); this continues its
# training on the GPU and checks the result with the motion probe before anything ships:
#   1. probe of the shipped prior on this device (the baseline, same code, same noise);
#   2. continue training from assets/toy_prior (warm start, a share of high-noise timesteps) with a
#      time budget; the prior folder comes back as $OUT/toy_prior.tar;
#   3. probe and samples of the new prior.
# Ship the new prior only if the probe's margins turn positive; then, on the CPU:
#   python bench/generate.py --toy --samples --ceiling --reconstruct --prior DIR --seeds 2 --threads 1
#
#   bash bench/gpu_toy_motion.sh [TRAIN_SECONDS] [HIGH_T_SHARE] [HIGH_T_FROM]
# The defaults lean on the top of the schedule: bench/toy_time.py study showed time is learned there
# (mirrored-times gap +29 % at t = 0.9 after 400 steps all at t >= 0.8, +0.3 % with the uniform draw).
set -u
TRAIN=${1:-480}
HIGH=${2:-0.8}
FROM=${3:-0.75}
. "$(dirname "$0")/gpu_common.sh"
stage "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys, diffusers, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
  nproc; } 2>&1 | tee -a "$LOG"

stage "probe of the shipped prior"
timeout 120 python3 bench/gpu_toy.py probe assets/toy_prior 2>&1 | grep -E "probe|seen|Error" | tee -a "$LOG"

stage "continue training from the shipped prior, ${TRAIN} s budget, high-t share ${HIGH} from ${FROM}"
WORKERS=$(( $(nproc) - 2 ))
timeout $(( TRAIN + 60 )) python3 bench/gpu_toy.py train /tmp/toy "$TRAIN" "$WORKERS" assets/toy_prior "$HIGH" "$FROM" > "$OUT/train.log" 2>&1
echo "train rc=$?" | tee -a "$LOG"
tr '\r' '\n' < "$OUT/train.log" | grep -E "steps cut|trained|Error|error|Traceback" | tail -5 | tee -a "$LOG"
if [ -d /tmp/toy/prior ]; then
  tar -C /tmp/toy -cf "$OUT/toy_prior.tar" prior
fi

stage "probe and samples of the new prior"
timeout 120 python3 bench/gpu_toy.py probe /tmp/toy/prior 2>&1 | grep -E "probe|seen|Error" | tee -a "$LOG"
timeout 60 python3 bench/gpu_toy.py sample /tmp/toy/prior "$OUT" 2>&1 | tail -4 | tee -a "$LOG"
stage "done"
