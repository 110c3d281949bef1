#!/usr/bin/env bash
# Everything the GPU measurements need, in one call on a machine with an NVIDIA GPU:
#   1. the project installed into .venv (torch==2.13.0: pip takes its CUDA build on Linux x86_64);
#   2. wrk (benchmarks/setup.sh);
#   3. the serving benchmark (benchmarks/bench_serving.py): it generates its datasets, trains both models on the GPU,
#      serves this service and the naive server (one worker per core each, every worker on the GPU) and loads them with
#      wrk at concurrency 1, 16 and 64 and with 64-image batches;
#   4. the training benchmark (benchmarks/bench_training.py, when present) on the GPU, with bf16 autocast as well.
# Results, with the GPU named, go to benchmarks/results/gpu/ (serving.json/.md, training.json/.md).
#
#   benchmarks/gpu/run.sh                       # on the GPU machine
#   benchmarks/gpu/run.sh --smoke --allow-cpu   # the same steps, minutes long, on a machine without a GPU
#
# Without a GPU the script stops before measuring anything unless --allow-cpu is given; --smoke shortens every run.
# A full run takes about 15 minutes after the install (both models served and loaded, then training); needs network
# access for the install (PyPI) and for wrk (apt-get) unless both are already there.
# Only a full-length run on a GPU writes to benchmarks/results/gpu/; the others write to a temporary folder. BENCH_ARGS adds arguments to the serving
# benchmark, TRAINING_ARGS to the training one.
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=0
allow_cpu=0
results=benchmarks/results/gpu
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --allow-cpu) allow_cpu=1 ;;
        --results) results="$2"; shift ;;
        *) echo "unknown argument $1; use --smoke, --allow-cpu or --results DIR" >&2; exit 64 ;;
    esac
    shift
done

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "Python environment"
python=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
elif [ -z "$python" ]; then
    echo "No Python found: install Python 3.11, or point PYTHON at one." >&2
    exit 4
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "The project needs Python 3.11 (pyproject.toml's requires-python); $python is $("$python" -V 2>&1)." \
        "Install python3.11 and point PYTHON at it (remove a .venv made with another version first)." >&2
    exit 4
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import mlops_assets, torch, bentoml" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
fi
# A venv made where there was no GPU may hold torch's CPU-only build; on a machine with an NVIDIA driver, the same
# torch version is installed again from PyPI, whose Linux x86_64 wheel is the CUDA build.
if [ "$(uname -m)" = x86_64 ] && command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1 \
    && [ "$(.venv/bin/python -c 'import torch; print(torch.version.cuda or "")')" = "" ]; then
    version=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')
    echo "torch $version in .venv is a CPU-only build: installing its CUDA build from PyPI"
    # torch alone replaced (its pinned neighbours stay as they are), then its CUDA libraries added.
    .venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
        --index-url https://pypi.org/simple "torch==$version"
    .venv/bin/pip install --quiet --disable-pip-version-check --index-url https://pypi.org/simple "torch==$version"
fi
.venv/bin/python -c "import torch; print('torch', torch.__version__, '| CUDA build', torch.version.cuda)"

step "Device"
device_name=$(.venv/bin/python -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -n "$device_name" ]; then
    echo "GPU: $device_name"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    training_device=(--device cuda --amp)
elif [ "$allow_cpu" = 1 ]; then
    echo "No GPU visible to torch: running on the CPU (--allow-cpu); the results say 'CPU only'."
    training_device=(--device cpu)
else
    echo "No GPU is visible to torch (torch.cuda.is_available() is False: no NVIDIA driver, or a CPU-only torch" \
        "build). Run this on a GPU machine, or pass --allow-cpu to run the same steps on the CPU." >&2
    exit 2
fi
# Only a GPU run of full length writes to the committed folder; a smoke or CPU run goes to a temporary one.
if { [ "$smoke" = 1 ] || [ -z "$device_name" ]; } && [ "$results" = benchmarks/results/gpu ]; then
    results=$(mktemp -d -t gpu-benchmarks-XXXXXX)
fi

step "wrk"
if ! sh benchmarks/setup.sh; then
    echo "wrk is missing and could not be installed (benchmarks/setup.sh uses apt-get); install wrk and run again." >&2
    exit 3
fi

mkdir -p "$results"
# The benchmark's own count: the cores this process may run on.
workers=$(.venv/bin/python -c 'import os; print(len(os.sched_getaffinity(0)))')
if [ "$smoke" = 1 ]; then
    serving_args=(--duration 1 --batch-runs 1 --paired-rounds 1 --paired-rounds-c64 1 --configurations digits)
    training_args=(--repeats 1 --datasets digits --digits-epochs 2)
else
    serving_args=(--duration 4 --batch-runs 2 --paired-rounds 6 --paired-rounds-c64 6)
    training_args=()
fi

step "Serving benchmark: this service and the naive server, $workers workers each"
# One worker per core for both servers (the benchmark's default), as the service's settings advise
# (serving.api_workers) and as the naive server is deployed; each worker holds its own copy of the model on the GPU.
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
.venv/bin/python benchmarks/bench_serving.py --results "$results" "${serving_args[@]}" ${BENCH_ARGS:-}

if [ -f benchmarks/bench_training.py ]; then
    step "Training benchmark"
    # shellcheck disable=SC2086  # TRAINING_ARGS is a list of arguments
    .venv/bin/python benchmarks/bench_training.py --results "$results" "${training_device[@]}" "${training_args[@]}" \
        ${TRAINING_ARGS:-}
else
    step "Training benchmark: benchmarks/bench_training.py is not in this checkout, skipped"
fi

step "Done"
echo "Results in $results:"
ls -l "$results"
