#!/usr/bin/env bash
# One device session, prepared ahead (the GPU is lent for minutes): build gsplat's kernels, hold them
# against the torch rasterizer, time both rasterizers, fit the D-NeRF captures and time playback.
#
#   bash bench/gpu_check.sh DATA_DIR [SECONDS]
#   bash bench/gpu_check.sh quick [SECONDS]     # build, parity, rasterizer speed, playback of random scenes
#
# DATA_DIR holds D-NeRF captures (jumpingjacks/, bouncingballs/). Python packages missing on the
# machine are installed from .whl/ when that folder exists. Results: $OUT/log.txt (every stage),
# $OUT/fit_*.log (training progress), test views and metrics of the fits. Each stage has a deadline
# so the script ends inside SECONDS (default 570).
set -u
DATA=${1:?usage: bench/gpu_check.sh DATA_DIR [SECONDS]}
BUDGET=${2:-570}
FITS=/tmp/scene4d_fits
mkdir -p "$FITS"
. "$(dirname "$0")/gpu_common.sh"
summary() {  # the result lines of a bench/reconstruct.py log, and its last progress line
  tr '\r' '\n' < "$1" | grep -E "device=|capture:|steps=|rotation error|Error|error|Traceback" | tail -8
  tr '\r' '\n' < "$1" | grep "reconstruct:" | tail -1
}

# one architecture list for every process: torch keys its extension cache on the build flags, so a
# process with other flags would rebuild gsplat (70 s) instead of loading it
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=14
stage "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nvcc --version | tail -2; nproc; } 2>&1 | tee -a "$LOG"

stage "gsplat JIT build (background)"
BUILD_LOG=/tmp/gsplat_build.log
( timeout 360 python3 -c \
    "import time; t=time.time(); from gsplat.cuda._backend import _C; assert _C is not None; print('gsplat kernels built in %.0f s' % (time.time()-t))" \
    > "$BUILD_LOG" 2>&1; echo "build rc=$? at $(el)s" >> "$BUILD_LOG" ) &
BUILD=$!

if [ "$DATA" = quick ]; then
  wait $BUILD; tail -3 "$BUILD_LOG" | tee -a "$LOG"
  stage "parity gsplat vs torch"
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_renderers/test_rasterize.py 2>&1 | tail -6 | tee -a "$LOG"
  timeout 40 python3 bench/gpu_parity.py 2>&1 | tee -a "$LOG"
  stage "rasterizer speed, gsplat vs torch"
  timeout 30 python3 bench/render.py --backends torch gsplat --n 10000 100000 --size 256 --cams 1 --repeat 5 2>&1 | tee -a "$LOG"
  stage "playback with the deformation every frame (random scenes of fitted-scene sizes)"
  for s in random:30000:dnerf:hexplane random:30000:dnerf:nodes random:7000:fast:nodes; do
    timeout 25 python3 bench/render.py --scene $s --size 400 800 --frames 120 --backends gsplat 2>&1 | tee -a "$LOG"
  done
  stage "done"; exit 0
fi

# while it builds (it takes the CPU cores): the torch rasterizer on the GPU, a few threads each
stage "torch rasterizer on the GPU"
OMP_NUM_THREADS=2 timeout 75 python3 bench/render.py --backends torch --n 10000 100000 --size 256 800 --cams 1 \
  --repeat 3 2>&1 | tee -a "$LOG"
stage "fast preset, torch rasterizer on the GPU: jumpingjacks 400^2"
OMP_NUM_THREADS=2 timeout 110 python3 bench/reconstruct.py --data "$DATA/jumpingjacks" --preset fast --device cuda \
  --backend torch --threads 2 --keep "$FITS/torch" --progress > "$OUT/fit_torch.log" 2>&1
summary "$OUT/fit_torch.log" | tee -a "$LOG"
wait $BUILD
tail -25 "$BUILD_LOG" | tee -a "$LOG"
if ! grep -q "gsplat kernels built" "$BUILD_LOG"; then
  stage "gsplat did not build: no gsplat stages"; exit 0
fi

stage "parity gsplat vs torch"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_renderers/test_rasterize.py 2>&1 | tail -6 | tee -a "$LOG"
timeout 60 python3 bench/gpu_parity.py 2>&1 | tee -a "$LOG"

# the D-NeRF preset on both captures at once (each process is launch-bound; the GPU has room)
R=$(( $(left) - 80 ))
stage "dnerf preset with gsplat: jumpingjacks (14000 steps) and bouncingballs (6000 steps), $R s for them"
timeout $R python3 bench/reconstruct.py --data "$DATA/jumpingjacks" --preset dnerf --device cuda --threads 4 \
  --keep "$FITS/jj" --progress > "$OUT/fit_jj.log" 2>&1 &
JJ=$!
timeout $R python3 bench/reconstruct.py --data "$DATA/bouncingballs" --preset dnerf --iters 6000 --device cuda \
  --threads 4 --keep "$FITS/bb" --progress > "$OUT/fit_bb.log" 2>&1 &
BB=$!
wait $JJ $BB
for f in fit_jj fit_bb; do echo "--- $f" | tee -a "$LOG"; summary "$OUT/$f.log" | tee -a "$LOG"; done
for f in jj bb; do
  for d in "$FITS/$f"/*; do
    [ -f "$d/metrics.json" ] && cp "$d/metrics.json" "$OUT/${f}_metrics.json"
    [ -f "$d/renders/test/000.png" ] && cp "$d/renders/test/000.png" "$OUT/${f}_test000.png"
  done
done

stage "rasterizer speed, gsplat vs torch"
timeout 40 python3 bench/render.py --backends torch gsplat --n 10000 100000 --size 256 --cams 1 --repeat 5 2>&1 | tee -a "$LOG"
timeout 20 python3 bench/render.py --backends gsplat --n 10000 100000 --size 256 800 --cams 1 --repeat 5 2>&1 | tee -a "$LOG"

stage "playback with the deformation every frame"
for d in "$FITS"/jj/* "$FITS"/bb/* "$FITS"/torch/*; do
  [ -f "$d/scene.json" ] || continue
  [ "$(left)" -gt 15 ] || break
  timeout 20 python3 bench/render.py --scene "$d" --size 400 800 --frames 120 --backends gsplat 2>&1 | tee -a "$LOG"
done
stage "done"
