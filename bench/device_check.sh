#!/usr/bin/env bash
# Issue 13's GPU checks, as one run on the lent device machine. Prepare once, here:
#   bench/device_pack.sh                     # .whl/site.tar.xz: Ray, pydantic for Python 3.12
# then call the device tool's run with
#   command "bash bench/device_check.sh", carry [".whl"], timeout_s 600
# (its steps take at most 90 + 150 + 150 + 100 + 90 s, usually far less; first seen on an H200
# on 2026-11-30: 21 + 130 + 56 + 20 s with the quick benchmark, 60 + 25 s with BENCH=full). STEPS picks some of them, e.g.
#   command "STEPS='tests bench probe' BENCH=full bash bench/device_check.sh"
# It unpacks the packages that machine lacks, then runs, each under its own time limit:
#   tests  the GPU tests (tests/test_gpu.py: model, gradients, training, sampling against the CPU);
#   run    a small `autolfads run --workers-per-gpu 3` on the built-in Lorenz data, with each
#          process's GPU memory from nvidia-smi every 2 s (its peaks end the log);
#   bench  the benchmark on the GPU (step, trials/s, sampling, GPU memory, 1/3/8 workers sharing
#          it), --quick unless BENCH=full, one case at a time so that a case over its limit keeps
#          the other's records;
#   probe  bench/gpu_probe.py: kernels and GPU busy time per step, sampling pass sizes
#          (PROBE_PARTS=steps or sampling for one of them).
# What comes back ($OUT, 8 files at most): gpu_tests.log, run_workers_per_gpu_3.log, the run's
# metrics.json and hp_log.csv, bench.log (both cases and the probe), gpu_probe.json, and
# bench/results.json and results.md with the GPU records added to this checkout's (bench.run
# keeps other devices' records; copied after each case that ran): copy those two into bench/
# here. The exit status is the last step's.
set -uo pipefail
OUT=${OUT:-/tmp/autolfads-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
site=/tmp/autolfads-site
mkdir -p "$site" && tar -C "$site" -xJf .whl/site.tar.xz || { echo "no .whl/site.tar.xz"; exit 1; }
export PYTHONPATH="$site:$PWD/src:$PWD"
PY=${PY:-python3}
STEPS=${STEPS:-tests run bench probe}
rc=0
QUICK=--quick
[ "${BENCH:-quick}" = full ] && QUICK=
has() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME SECONDS COMMAND...: its output added to $OUT/LOG.log (LOG: NAME unless
    local name=$1 limit=$2 t0=$SECONDS log=$OUT/${LOG:-$1}.log  # set), the end of it here
    shift 2
    echo "== $name (at most $limit s)" | tee -a "$log"
    timeout -k 10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    tail -n 12 "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || exit 1
$PY -c "import torch, ray, pydantic; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
torch.cuda.get_arch_list(), 'ray', ray.__version__, 'pydantic', pydantic.__version__)"

$PY -c "from autolfads.training.process import missing_kernels, resolve_device
print('kernels missing:', missing_kernels(), '| auto device:', resolve_device('auto'))"

has tests && step gpu_tests 90 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py

run_and_watch() {  # the run, with each process's GPU memory every 2 s
    rm -f /tmp/gpu_apps.csv  # (a warm machine keeps the last call's samples)
    $PY -m autolfads.cli run --out /tmp/autolfads-gpu-run --force --workers-per-gpu 3 \
        --population 6 --generations 3 --epochs-per-generation 10 &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader \
            | sed "s/^/$SECONDS, /" >>/tmp/gpu_apps.csv
        sleep 2
    done
    wait $pid
    local rc=$?
    echo "GPU memory per process (nvidia-smi; pid: peak MiB):"
    awk -F', ' '{m=$3+0; if (m > peak[$2]) peak[$2] = m} END {for (p in peak) print " " p ": " peak[p]}' \
        /tmp/gpu_apps.csv 2>/dev/null
    return $rc
}
export PY OUT
export -f run_and_watch
if has run; then
    step run_workers_per_gpu_3 150 bash -c run_and_watch
    cp /tmp/autolfads-gpu-run/metrics.json /tmp/autolfads-gpu-run/pbt/hp_log.csv "$OUT/" 2>/dev/null
fi

if has bench; then
    LOG=bench step bench_lorenz 150 $PY -m bench.run --device cuda $QUICK --cases lorenz --out bench
    [ "$rc" = 0 ] && cp bench/results.json bench/results.md "$OUT/"
    LOG=bench step bench_mc_maze 100 $PY -m bench.run --device cuda $QUICK --cases mc_maze \
        --no-workers --out bench
    [ "$rc" = 0 ] && cp bench/results.json bench/results.md "$OUT/"
fi
has probe && LOG=bench step probe 90 $PY -m bench.gpu_probe --device cuda --out "$OUT" \
    --parts "${PROBE_PARTS:-steps,sampling}"
ls -la "$OUT"
exit "$rc"
