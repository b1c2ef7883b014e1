"""Training speed against thread count and OpenMP wait policy, on an idle and on a busy machine.

    python bench/threads.py                       # numba and torch rasterizers, idle then busy
    python bench/threads.py --backends numba --steps 150 --size 128 --repeat 2

Each configuration is a fresh process (the OpenMP runtime reads its wait policy once, when torch
loads) that fits the procedural demo capture for --steps steps (fast preset, full resolution) and
reports steps/s from the training loop's own clock. "busy" starts one extra process spinning a core
beside it for the whole measurement (the neighbour every laptop has); "idle" starts none (other
jobs already on the machine are reported from the load average, not controlled).

Columns: steps/s with ``configure_cpu_threads(N)`` for each N (``--threads N``); "torch-def", a
process that sets nothing (torch's default: every core for torch and, following it, for the
rasterizer); "default", ``configure_cpu_threads(None)`` (torch 1 thread, compiled rasterizer on
every core); "/best": that column over the best --threads value. The acceptance is /best >= 0.67
(the default within 1.5x of the best --threads choice), busy and idle.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, tempfile, time, torch
from pathlib import Path
sys.path.insert(0, {root!r})
from scene4d.data import load_capture
from scene4d.data.synthetic import make_dnerf_capture
from scene4d.reconstruct import preset, train, with_iters
mode = {mode!r}
if mode != "torch-default":  # "torch-default": what a process gets when nobody sets threads
    from renderers import configure_cpu_threads
    configure_cpu_threads(None if mode == "proposed" else int(mode))
with tempfile.TemporaryDirectory() as d:
    cap = load_capture(make_dnerf_capture(Path(d) / "cap", size={size}))
    cfg = preset("fast")
    with_iters(cfg, {steps})
    cfg.downscales = 0
    res = train(cap, Path(d) / "s", cfg, progress=False, backend={backend!r})
    print("RATE", res.steps / res.seconds, torch.get_num_threads())
"""

POLICIES = {
    "unset": {},  # libgomp's default: spin ~300k iterations, then sleep
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # sleep at once
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
}


def rate(backend: str, mode: str, policy: str, steps: int, size: int) -> tuple:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    code = CHILD.format(root=str(ROOT), mode=mode, size=size, steps=steps, backend=backend)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RATE")]
    if r.returncode != 0 or not line:
        raise SystemExit(r.stderr[-2000:])
    _, v, n = line[-1].split()
    return float(v), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["numba", "torch"])
    ap.add_argument("--policies", nargs="+", default=["unset", "passive"], choices=list(POLICIES),
                    help="OpenMP wait settings of the child processes")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration (the best is kept)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, cores} | ({2} if cores > 2 else set()))
    print(f"{cores} cores; {args.steps} steps of the demo capture at {args.size}^2 per run; best of {args.repeat}")
    print(f"{'machine':8s} {'load':>5s} {'backend':8s} {'policy':8s} " + " ".join(f"{'t=' + str(c):>7s}" for c in counts)
          + f" {'torch-def':>9s} {'/best':>5s} {'default':>8s} {'/best':>5s}")
    for machine in ("idle", "busy"):
        spinner = None
        if machine == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for backend in args.backends:
                for policy in args.policies:
                    load = os.getloadavg()[0]
                    best = {}
                    torch_default = default = 0.0
                    for _ in range(args.repeat):
                        for c in counts:
                            best[c] = max(best.get(c, 0.0), rate(backend, str(c), policy, args.steps, args.size)[0])
                        torch_default = max(torch_default, rate(backend, "torch-default", policy, args.steps,
                                                                args.size)[0])
                        default = max(default, rate(backend, "proposed", policy, args.steps, args.size)[0])
                    top = max(best.values())
                    print(f"{machine:8s} {load:5.2f} {backend:8s} {policy:8s} "
                          + " ".join(f"{best[c]:7.1f}" for c in counts)
                          + f" {torch_default:9.1f} {torch_default / top:5.2f} {default:8.1f} {default / top:5.2f}",
                          flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()


if __name__ == "__main__":
    main()
