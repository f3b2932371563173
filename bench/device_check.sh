#!/usr/bin/env bash
# Issue 13's GPU checks, as one run on the lent device machine. Prepare once, here:
#   bench/device_pack.sh                     # .whl/site.tar.xz: Ray, pydantic for Python 3.12
# then call the device tool's run with
#   command "bash bench/device_check.sh", carry [".whl"], timeout_s 420
# (its steps take at most 90 + 120 + 180 s: a second try fits in a session's 15 device minutes)
# It unpacks the packages that machine lacks, then runs, each under its own time limit:
#   1. the GPU tests (tests/test_gpu.py: model, gradients, training, sampling against the CPU);
#   2. a small `autolfads run --workers-per-gpu 3` on the built-in Lorenz data, sampling each
#      worker's GPU memory with nvidia-smi;
#   3. the benchmark on the GPU (step, trials/s, sampling, GPU memory, 1/3/8 workers sharing it).
# What comes back ($OUT, 8 files): one log per step, gpu_apps.csv, the run's metrics.json and
# hp_log.csv, and bench/results.json and results.md with the GPU records added to this
# checkout's (bench.run keeps other devices' records; copied only when the benchmark ran):
# copy those two into bench/ here. The exit status is the benchmark's.
set -uo pipefail
OUT=${OUT:-/tmp/autolfads-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
site=/tmp/autolfads-site
mkdir -p "$site" && tar -C "$site" -xJf .whl/site.tar.xz || { echo "no .whl/site.tar.xz"; exit 1; }
export PYTHONPATH="$site:$PWD/src:$PWD"
PY=${PY:-python3}

step() {  # step NAME SECONDS COMMAND...: its output in $OUT/NAME.log, the end of it here
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "== $name (at most $limit s)"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    tail -n 12 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || exit 1
$PY -c "import torch, ray, pydantic; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
torch.cuda.get_arch_list(), 'ray', ray.__version__, 'pydantic', pydantic.__version__)"

step gpu_tests 90 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py

run_and_watch() {  # the run, with each process's GPU memory every 2 s
    $PY -m autolfads.cli run --out /tmp/autolfads-gpu-run --force --workers-per-gpu 3 \
        --population 6 --generations 3 --epochs-per-generation 10 &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader \
            | sed "s/^/$SECONDS, /" >>"$OUT/gpu_apps.csv"
        sleep 2
    done
    wait $pid
}
export PY OUT
export -f run_and_watch
step run_workers_per_gpu_3 120 bash -c run_and_watch
cp /tmp/autolfads-gpu-run/metrics.json /tmp/autolfads-gpu-run/pbt/hp_log.csv "$OUT/" 2>/dev/null

step bench 180 $PY -m bench.run --device cuda --quick --out bench
bench_rc=$rc
[ "$bench_rc" = 0 ] && cp bench/results.json bench/results.md "$OUT/"
ls -la "$OUT"
exit "$bench_rc"
