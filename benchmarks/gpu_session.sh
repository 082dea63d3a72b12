#!/usr/bin/env bash
# The GPU checks of issue 18, prepared so that a session lent a GPU spends its device time on them
# and not on setting up. A session has 15 minutes of device time in all, the machine's start
# (one to two minutes) and its idle time included, so the two calls below have 12 minutes of
# limits between them (bench 5, tests 7) and the second must follow the first at once: the
# machine stays warm 30 s after a call, and a fresh start costs minutes more. Then give it back.
#
#   here, once (a machine that reaches the package registry):
#       bash benchmarks/gpu_session.sh wheels
#   there, through the device tool, each as one call with carry [".whl"]:
#       bash benchmarks/gpu_session.sh bench     # timeout_s 340: 512x512 throughput, eager (3 arms)
#                                                # and compiled with CUDA graphs; a profile
#       bash benchmarks/gpu_session.sh tests     # timeout_s 430: the gpu-marked tests, then the rest
#
# The device image has PyTorch, NumPy, SciPy, h5py, Numba, safetensors, matplotlib, tqdm, PyYAML,
# tensorboard, onnx/onnxruntime, pytest and hypothesis, but not pydantic, MONAI, nibabel, pydicom,
# submitit or nilearn: `wheels` downloads those (about 21 MB) into .whl/, which git ignores. Ray (a 79 MB wheel)
# does not fit the 64 MiB a call may carry, so its tests skip there; they run on every CPU CI.
# What a stage writes lands in $OUT (the device tool's folder; benchmarks/results/gpu_session here),
# at most eight files: copy the JSON records you keep into benchmarks/results/ under the card's name.
#
# SMOKE=1 PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh bench   runs the same sequence on
# the CPU at 64x64 (a check of this script, not a measurement; nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(realpath -m "${OUT:-benchmarks/results/gpu_session}")"
PYTHON="${PYTHON:-python3}"
# A path to an interpreter (a virtualenv's) must survive the `cd benchmarks` below; keep its links.
[[ "$PYTHON" == */* ]] && PYTHON="$(realpath -s "$PYTHON")"
SMOKE="${SMOKE:-0}"
mkdir -p "$OUT"

# What the device image lacks, at the versions this project's CPU virtualenv resolved (read from
# its `pip freeze` when `wheels` runs, so they follow pyproject.toml), for CPython 3.12.
NEEDED=(
    pydantic pydantic_core annotated-types typing-inspection
    typing_extensions # pydantic 2.14 needs >= 4.16; the image's may be older
    monai nibabel pydicom submitit
    nilearn # only for the demo's MNI152 template files, found with find_spec, never imported
)
VENV_PYTHON="${VENV_PYTHON:-.venv/bin/python}"

# "name==version" for each of NEEDED as the virtualenv has it; fails naming what it lacks.
pinned() {
    [[ -x "$VENV_PYTHON" ]] || { echo "no $VENV_PYTHON: run 'make venv' first" >&2; return 2; }
    "$VENV_PYTHON" - "${NEEDED[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

found, missing = [], []
for name in sys.argv[1:]:
    try:
        found.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"the virtualenv lacks {', '.join(missing)}: run 'make venv' first")
print("\n".join(found))
PY
}

wheels() {
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    local wheels
    wheels="$(pinned)"
    echo "$wheels" | tr '\n' ' ' && echo
    # shellcheck disable=SC2086  # one requirement per word
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $wheels
    du -sh .whl
}

setup() {
    export PYTHONUNBUFFERED=1
    : >"$OUT/machine.txt"
    if [[ "$SMOKE" != 1 ]]; then
        # The image's python3 holds CUDA PyTorch; the project goes in beside it, its pins aside.
        ls .whl/*.whl >/dev/null || { echo "no .whl/: run 'bash benchmarks/gpu_session.sh wheels' here first" >&2; exit 2; }
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile .whl/*.whl
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . || {
            echo "editable install failed (setuptools too old?); importing from src/ instead" >&2
            export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
        }
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/machine.txt"
    fi
    {
        "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
            "cudnn", torch.backends.cudnn.version(),
            torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
        lscpu | grep -E '^(Model name|CPU\(s\))'
    } 2>&1 | tee -a "$OUT/machine.txt"
}

# One benchmark run, limited to $1 seconds; a failure or a timeout is reported and the sequence
# goes on, so that one broken setting cannot cost the others their device time.
timed() {
    local limit="$1" name="$2"
    shift 2
    local started=$SECONDS
    timeout "$limit" "$PYTHON" bench_gpu_throughput.py "${common[@]}" "$@" --output "$OUT/$name.json" \
        || echo "$name: failed or ran past ${limit} s (exit $?)" >&2
    echo "$name: $((SECONDS - started)) s" >&2
}

bench() {
    setup
    common=(--device cuda --size 512 --batch 16 --dtype bf16 --steps 50 --warmup 10)
    if [[ "$SMOKE" == 1 ]]; then
        common=(--device cpu --size 64 --batch 2 --dtype fp32 --steps 1 --warmup 1 --patch-size 8)
    fi
    cd benchmarks
    # Most important first. Eager in the CUDA default layout: all three arms (library, MONAI, bare).
    timed 80 gpu_eager
    # run.compile: library and MONAI compiled alike (compilation falls in the warm-up, reported as
    # warmup_seconds); reduce-overhead = the compiler's kernels replayed as CUDA graphs, in
    # channels_last, where the compiled GroupNorm needs no layout copies and cuDNN's bf16
    # convolutions take their preferred layout. Compiling both networks took 1.5 minutes on the
    # 2-core CPU at 64x64 with a cold cache (MONAI's failed there). Left for a later lease: the
    # default layout compiled, and `--compile default` (the compiler's gain without the graphs').
    timed 180 gpu_cudagraphs_channels_last --compile reduce-overhead --channels-last --arms library monai
    "$PYTHON" gpu_throughput_table.py "$OUT"/gpu_*.json | tee "$OUT/table.md"
    # Where an eager step's GPU time goes, by operator (the eighth and last file $OUT may return).
    local device=cuda size=512
    [[ "$SMOKE" == 1 ]] && device=cpu size=64
    timeout 30 "$PYTHON" profile_step.py --device "$device" --size "$size" --no-channels-last --rows 25 \
        >"$OUT/profile.txt" || echo "profile: failed or ran past 30 s" >&2
}

tests() {
    setup
    local status=0
    # The gpu-marked tests first, so that a failure elsewhere cannot hide them; then the rest,
    # spread over the machine's 16 cores: 8 workers of 2 torch threads each (tests/conftest.py),
    # pytest-xdist and pytest-timeout being in the image.
    timeout 200 "$PYTHON" -m pytest -p no:cacheprovider -q -m gpu 2>&1 | tee "$OUT/tests_gpu.log" || status=1
    timeout 200 "$PYTHON" -m pytest -p no:cacheprovider -q -m "not gpu" -n 8 --timeout 180 2>&1 \
        | tee "$OUT/tests_all.log" || status=1
    return "$status"
}

case "${1:-}" in
    wheels | bench | tests) "$1" ;;
    *)
        echo "usage: bash benchmarks/gpu_session.sh wheels|bench|tests" >&2
        exit 2
        ;;
esac
