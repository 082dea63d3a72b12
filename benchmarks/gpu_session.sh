#!/usr/bin/env bash
# The GPU checks of issue 18, prepared so that a session lent a GPU spends its device time on them
# and not on setting up. A session has 15 minutes of device time in all (900 s), the machine's
# start, the transfers and its idle time included. The plan, for issue 18's acceptance (the
# benchmark, and the whole suite on the card):
#
#   start + upload about 35 s + bench call 320 s + suite call 480 s = about 835 s,
#
# which leaves about a minute for the second upload of the tree and .whl/ (about 22 MB) and the
# gap between the calls: run the second call right after the first (the machine stays warm 30 s
# after a call; a fresh start costs more), then give it back. (On the H200, 2026-12-04, the first
# call's start and upload took about 30 s.) `tests` (timeout_s 280: the gpu-marked tests and the
# CUDA-relevant files' fast tests) is the shorter check, for a lease with less time left.
#
#   here, once (a machine that reaches the package registry):
#       bash benchmarks/gpu_session.sh wheels
#   there, through the device tool, each as one call with carry [".whl"]:
#       bash benchmarks/gpu_session.sh bench     # timeout_s 320: 512x512 throughput, eager (3 arms)
#                                                # and each network compiled with CUDA graphs; a profile
#       bash benchmarks/gpu_session.sh suite     # timeout_s 480: the gpu-marked tests, then the
#                                                # rest of the suite on 12 workers
#   (`bash benchmarks/gpu_session.sh setup` does the install and machine.txt alone.)
#
# Each call works to a deadline a little inside its timeout_s (BUDGET, below): every stage gets
# at most its planned limit and never more than the time left minus what the later stages need,
# so a slow stage cannot cost the later ones their turn. Every stage is independent: a failure or
# a timeout is reported (stages.txt in $OUT, and a summary at the end) and the next stage runs.
# The exit status is 1 when any stage failed.
#
# The device image has PyTorch, NumPy, SciPy, h5py, Numba, safetensors, matplotlib, tqdm, PyYAML,
# tensorboard, onnx/onnxruntime, pytest (with pytest-xdist and pytest-timeout) and hypothesis, but
# not pydantic, MONAI, nibabel, pydicom, submitit or nilearn: `wheels` downloads those, and a
# setuptools >= 77 to build the project with (about 22 MB), into .whl/, which git ignores. Ray (a 79 MB wheel) does not fit the 64 MiB a call may
# carry, so its tests skip there; they run on every CPU CI. `setup` installs them into $PYTHON
# (the image's python3) and, where pip refuses that, with --user, then into a virtualenv that sees
# the image's packages, then into a folder on PYTHONPATH; it says which, and the next call on the
# same (warm) machine reuses it. Without pytest-xdist the tests run in one process.
# What a stage writes lands in $OUT (the device tool's folder; benchmarks/results/gpu_session here),
# at most eight files (the tests' failures.txt holds each failing test's report as it happens):
# copy the JSON records you keep into benchmarks/results/ under the card's name.
#
# SMOKE=1 PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh bench   runs the same sequence on
# the CPU at 64x64 (a check of this script, not a measurement; nothing is installed; the limits
# are those of a slow CPU, not the plan above). `... tests` likewise runs the gpu-marked tests
# (they skip without a GPU) and one CUDA-relevant file.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT="$(realpath -m "${OUT:-benchmarks/results/gpu_session}")"
PYTHON="${PYTHON:-python3}"
# A path to an interpreter (a virtualenv's) must survive the `cd benchmarks` below; keep its links.
[[ "$PYTHON" == */* ]] && PYTHON="$(realpath -s "$PYTHON")"
SMOKE="${SMOKE:-0}"
WHEELS="${WHEELS:-.whl}"
# Where `setup` falls back to when pip may not install into $PYTHON, and the file that tells the
# next call on the same machine what it chose.
SESSION_DIR="${SESSION_DIR:-/tmp/inpaintssl_gpu_session}"
mkdir -p "$OUT"
STAGES="$OUT/stages.txt"
FAILED=0
START=$SECONDS

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
    set -e
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    local wheels
    wheels="$(pinned)"
    echo "$wheels" | tr '\n' ' ' && echo
    # shellcheck disable=SC2086  # one requirement per word
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $wheels
    # The project's own install builds with the machine's setuptools (--no-build-isolation), and
    # its SPDX `license` string needs >= 77: carry one rather than trust the image's.
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d .whl "setuptools>=77"
    du -sh .whl
}

# -- the deadline and the stages ---------------------------------------------------------------

# Seconds left before this call's deadline ($BUDGET after the script started).
left() { echo $((BUDGET - (SECONDS - START))); }

# The limit of a stage planned at $1 seconds when $2 seconds must stay for the stages after it
# (their limits plus the 10 s each `timeout -k` may add); 0 when fewer than 10 s would be left.
limit() {
    local planned="$1" reserve="$2" room
    room=$(($(left) - reserve - 10))
    ((room > planned)) && room=$planned
    ((room < 10)) && room=0
    echo "$room"
}

# Record a stage's outcome: in $STAGES, on stderr, and in the exit status.
report() {
    local name="$1" status="$2" seconds="$3"
    [[ "$status" == ok* ]] || FAILED=1
    printf '%-34s %-58s %4d s\n' "$name" "$status" "$seconds" | tee -a "$STAGES" >&2
}

# stage NAME PLANNED RESERVE CMD...: run CMD under `timeout` (TERM at the limit, KILL 10 s later),
# its output to the terminal; a failure, a timeout or a skip (no time left) is reported, and the
# script goes on.
stage() {
    local name="$1" planned="$2" reserve="$3" seconds started rc
    shift 3
    seconds="$(limit "$planned" "$reserve")"
    if ((seconds == 0)); then
        report "$name" "skipped: $(left) s left, $reserve s kept for later stages" 0
        return 0
    fi
    echo "== $name (limit ${seconds} s, $(left) s left)" >&2
    started=$SECONDS
    timeout -k 10 "$seconds" "$@"
    rc=$?
    if ((rc == 0)); then
        report "$name" "ok" $((SECONDS - started))
    elif ((rc == 124 || rc == 137)); then
        report "$name" "ran past its ${seconds} s limit (exit $rc)" $((SECONDS - started))
    else
        report "$name" "failed (exit $rc)" $((SECONDS - started))
    fi
    return 0
}

summary() {
    echo "== stages ($((SECONDS - START)) s of a ${BUDGET} s budget):" >&2
    cat "$STAGES" >&2
    return "$FAILED"
}

# -- setup -------------------------------------------------------------------------------------

# A virtualenv that sees $PYTHON's packages. --system-site-packages alone shows the base
# interpreter's, not those of the virtualenv $PYTHON may itself be (the image's python3 is one, with
# PyTorch in it), so a .pth file adds $PYTHON's own site-packages.
new_venv() {
    local venv="$1" parent site
    "$PYTHON" -m venv --system-site-packages "$venv" || return 1
    parent="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    [[ "$parent" == "$site" ]] || echo "$parent" >"$site/_gpu_session_parent.pth"
}

# One way to pip install "$@" (its output in $SESSION_DIR/pip.log): "plain" into $PYTHON, "user"
# (--user), "venv" (a virtualenv with the image's packages; PYTHON becomes its interpreter) or
# "target" (a folder put on PYTHONPATH; --target skips PEP 668's check, and an editable install
# cannot go there, so the project goes in as a copy of src/, which PYTHONPATH puts second to the
# carried src/ anyway).
install_as() {
    local mode="$1" log="$SESSION_DIR/pip.log" venv="$SESSION_DIR/venv" site="$SESSION_DIR/site" arg
    shift
    case "$mode" in
        plain) timeout 60 "$PYTHON" -m pip install "$@" >"$log" 2>&1 ;;
        user) timeout 60 "$PYTHON" -m pip install --user "$@" >"$log" 2>&1 ;;
        venv)
            { [[ -x "$venv/bin/python" ]] || new_venv "$venv" >"$log" 2>&1; } &&
                timeout 60 "$venv/bin/python" -m pip install "$@" >"$log" 2>&1 || return 1
            PYTHON="$venv/bin/python"
            echo "PYTHON='$PYTHON'" >"$SESSION_DIR/env"
            ;;
        target)
            local args=()
            for arg in "$@"; do [[ "$arg" == -e ]] || args+=("$arg"); done
            timeout 60 "$PYTHON" -m pip install --upgrade --target "$site" "${args[@]}" >"$log" 2>&1 || return 1
            [[ ":${PYTHONPATH:-}:" == *":$site:"* ]] || export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$site"
            echo "export PYTHONPATH=\"\${PYTHONPATH:+\$PYTHONPATH:}$site\"" >"$SESSION_DIR/env"
            ;;
    esac
}

# pip install "$@" the first way that works, starting from the way that worked last (INSTALL_MODE);
# says what it tried and what it chose.
INSTALL_MODE=""
install() {
    local modes=(plain user venv target) mode
    mkdir -p "$SESSION_DIR"
    [[ -n "$INSTALL_MODE" ]] && modes=("$INSTALL_MODE")
    for mode in "${modes[@]}"; do
        # Each attempt is bounded, and none starts with under a minute of the call's budget left.
        (($(left) > 60)) || { echo "install: under 60 s of the budget left; not tried" >&2; return 1; }
        if install_as "$mode" "$@"; then
            INSTALL_MODE="$mode"
            echo "install ($mode): $* -> ok (python: $PYTHON${PYTHONPATH:+, PYTHONPATH $PYTHONPATH})" >&2
            return 0
        fi
        echo "install ($mode) refused or failed: $(tail -n 1 "$SESSION_DIR/pip.log")" >&2
    done
    return 1
}

have() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

setup_install() {
    # A warm machine keeps what the previous call installed (and how).
    # shellcheck disable=SC1091
    [[ -f "$SESSION_DIR/env" ]] && source "$SESSION_DIR/env"
    if have "pydantic, monai, nibabel, pydicom, submitit, inpaintssl.config"; then
        echo "setup: the packages are installed already ($PYTHON)" >&2
        return 0
    fi
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || {
        echo "no $WHEELS/: run 'bash benchmarks/gpu_session.sh wheels' here first" >&2
        return 2
    }
    install --quiet --no-index --no-deps --no-compile "$WHEELS"/*.whl || return 1
    install --quiet --no-index --no-deps --no-build-isolation -e . ||
        echo "setup: the project's install failed; importing it from src/ (no entry points)" >&2
}

setup() {
    export PYTHONUNBUFFERED=1
    : >"$OUT/machine.txt"
    : >"$STAGES"
    # The carried tree's src/ first, whatever an earlier editable install points at.
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    if [[ "$SMOKE" != 1 ]]; then
        # The image's python3 holds CUDA PyTorch; the project goes in beside it, its pins aside.
        local started=$SECONDS
        if setup_install; then
            report "setup (install)" "ok" $((SECONDS - started))
        else
            report "setup (install)" "failed: see above" $((SECONDS - started))
        fi
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 |
            tee -a "$OUT/machine.txt" || echo "nvidia-smi failed" | tee -a "$OUT/machine.txt"
    fi
    {
        echo "python: $PYTHON${PYTHONPATH:+ (PYTHONPATH $PYTHONPATH)}"
        "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
            "cudnn", torch.backends.cudnn.version(),
            torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
        lscpu | grep -E '^(Model name|CPU\(s\))'
    } 2>&1 | tee -a "$OUT/machine.txt"
}

# -- bench -------------------------------------------------------------------------------------

# One throughput run: bench_gpu_throughput.py writes its record after every arm, so a run stopped
# at its limit keeps the arms it finished (marked "complete": false). Its log goes to bench.log.
throughput() {
    local name="$1" planned="$2" reserve="$3"
    shift 3
    stage "$name" "$planned" "$reserve" \
        "$PYTHON" bench_gpu_throughput.py "${common[@]}" "$@" --output "$OUT/$name.json" \
        2> >(tee -a "$OUT/bench.log" >&2)
}

# The table of whatever records the runs left; fails (and says so) when there is none.
table() {
    shopt -s nullglob
    local records=("$OUT"/gpu_*.json)
    if ((${#records[@]} == 0)); then
        echo "no gpu_*.json: no throughput run wrote a record" >&2
        return 1
    fi
    # On stdout only: the device tool brings back at most eight files, and the records remake it.
    "$PYTHON" gpu_throughput_table.py "${records[@]}"
}

bench() {
    BUDGET="${BUDGET:-300}" # timeout_s 320, less 20 s for the device tool's own ends
    # Planned limits, seconds: eager 60, each compiled network 100, table 10, profile 20 (setup
    # 6 s on the H200, 2026-12-04). There the eager run took 46 s, the library's compiled arm 49 s
    # of compilation before its timing, and the profile 16 s; MONAI's compiled arm, in the same
    # 140 s run as the library's, did not finish: each network now has a run and a limit of its own.
    local eager=60 compiled=100 normed=30 tabled=10 profiled=20
    common=(--device cuda --size 512 --batch 16 --dtype bf16 --steps 50 --warmup 10)
    local device=cuda size=512
    if [[ "$SMOKE" == 1 ]]; then
        BUDGET="${BUDGET_SMOKE:-1500}"
        eager=400 compiled=300 normed=300 tabled=60 profiled=200
        common=(--device cpu --size 64 --batch 2 --dtype fp32 --steps 1 --warmup 1 --patch-size 8)
        device=cpu size=64
    fi
    setup
    cd benchmarks || return 2
    export -f table # for `timeout`, which runs programs, not functions
    export OUT PYTHON
    # Most important first. Eager in the CUDA default layout: all three arms (library, MONAI, bare).
    throughput gpu_eager "$eager" $((compiled + normed + tabled + profiled + 40))
    # run.compile: library and MONAI compiled alike (compilation falls in the warm-up, reported as
    # warmup_seconds); reduce-overhead = the compiler's kernels replayed as CUDA graphs, in
    # channels_last, where the compiled GroupNorm needs no layout copies and cuDNN's bf16
    # convolutions take their preferred layout. One run per network, so that a slow compilation
    # of one cannot cost the other its turn; the table compares them as one setting. Left for a
    # later lease: the default layout compiled, and `--compile default` (the compiler's gain
    # without the graphs').
    throughput gpu_cudagraphs_channels_last "$compiled" $((compiled / 2 + normed + tabled + profiled + 30)) \
        --compile reduce-overhead --channels-last --arms library
    throughput gpu_cudagraphs_channels_last_monai "$compiled" $((normed + tabled + profiled + 20)) \
        --compile reduce-overhead --channels-last --arms monai
    # model.params.norm_precision autocast: GroupNorm in bf16 rather than autocast's float32, with
    # no casts around it (the eager profile's 16 % of casts, and half of GroupNorm's bytes). Not
    # timed before; eager beside gpu_eager's library arm, so the two records give its gain.
    throughput gpu_eager_norm_autocast "$normed" $((tabled + profiled + 20)) --arms library \
        --norm-precision autocast
    stage table "$tabled" $((profiled + 10)) bash -c 'set -o pipefail; table'
    # Where an eager step's GPU time goes, by operator.
    stage profile "$profiled" 0 bash -c '"$0" profile_step.py --device "$1" --size "$2" --no-channels-last \
        --rows 25 >"$3"' "$PYTHON" "$device" "$size" "$OUT/profile.txt"
    summary
}

# -- tests -------------------------------------------------------------------------------------

# The files with gpu-marked tests, and the device-resolution tests: their other tests are the ones
# whose behaviour a present CUDA device can change (device "auto", amp "auto", channels_last "auto").
CUDA_FILES=(
    tests/training/test_training_device.py
    tests/training/test_training_step.py
    tests/models/test_models_unet.py
    tests/losses/test_losses_registered.py
    tests/metrics/test_metrics_segmentation.py
    tests/corruption/test_corruption_tasks.py
    tests/transfer_learning/test_transfer_weights.py
    tests/inference/test_inference_loading.py
    tests/test_config_sanity.py
    tests/test_options.py
    tests/inference/test_inference_predict.py
    tests/training/test_training_integration.py
    tests/studies/test_studies_runner.py
    tests/studies/test_studies_executors.py
)

# The pytest options both test calls share, in three arrays: WORKERS (-n NWORKERS, for the CPU
# tests), GPU_WORKERS (-n GPU_NWORKERS: the gpu-marked tests share the card) and PER_TEST (a
# per-test limit of $1 seconds, and failures.txt written as the tests fail).
pytest_options() {
    local per_test_limit="$1" nworkers="$2" gpu_nworkers="$3"
    WORKERS=() GPU_WORKERS=() PER_TEST=()
    if have xdist; then
        # Of 2 torch threads each (tests/conftest.py), on the 16 cores. Whole files per worker: a
        # file's module-scoped fixtures (test_inference_predict.py trains four small networks) are
        # built once, not once in every worker that draws one of its tests; on the H200 that file's
        # tests errored in setup or ran out of time with the tests dealt out one by one.
        WORKERS=(-n "$nworkers" --dist loadfile)
        GPU_WORKERS=(-n "$gpu_nworkers")
    else
        WORKERS=(-p no:xdist)
        GPU_WORKERS=(-p no:xdist)
        echo "tests: pytest-xdist is missing: the tests run in one process" >&2
    fi
    if have pytest_timeout; then
        PER_TEST=(--timeout "$per_test_limit") # one hung test fails alone rather than ending the stage
    else
        echo "tests: pytest-timeout is missing: no per-test limit" >&2
    fi
    # pytest prints its failure reports only when a run ends, so a stage cut off by its limit
    # would lose them (as six setup errors were on the H200): each goes to failures.txt at once.
    export PYTHONPATH="$PWD/benchmarks:$PYTHONPATH" PYTEST_FAILURES_NOW="$OUT/failures.txt"
    : >"$PYTEST_FAILURES_NOW"
    PER_TEST+=(-p pytest_failures_now -rfE)
}

# The gpu-marked tests (43; tests/conftest.py marks the contract suites' CUDA checks too), first,
# so that a failure elsewhere cannot hide them: 62 s on 6 workers of the H200 (2026-12-04), more
# than 150 s in one process; they share the card (139 GiB) without trouble.
gpu_tests() {
    local planned="$1" reserve="$2"
    stage "tests: -m gpu" "$planned" "$reserve" bash -c 'set -o pipefail; "$0" -m pytest -p no:cacheprovider \
        -q -m gpu "${@:2}" --durations 10 2>&1 | tee "$1"' "$PYTHON" "$OUT/tests_gpu.log" "${GPU_WORKERS[@]}" \
        "${PER_TEST[@]}"
}

# `tests`: the gpu-marked tests, then the fast (not slow) other tests of the CUDA-relevant files.
tests() {
    BUDGET="${BUDGET:-265}" # timeout_s 280, less 15 s
    local gpu=100 subset=200 files=("${CUDA_FILES[@]}") nworkers=8 gpu_nworkers=6
    if [[ "$SMOKE" == 1 ]]; then
        BUDGET="${BUDGET_SMOKE:-900}"
        gpu=300 subset=500 files=(tests/training/test_training_device.py) nworkers=2 gpu_nworkers=2
    fi
    setup
    pytest_options 100 "$nworkers" "$gpu_nworkers"
    gpu_tests "$gpu" 60
    stage "tests: CUDA files, not gpu/slow" "$subset" 0 bash -c 'set -o pipefail; "$0" -m pytest \
        -p no:cacheprovider -q -m "not gpu and not slow" "${@:2}" --durations 10 2>&1 | tee "$1"' \
        "$PYTHON" "$OUT/tests_cuda_files.log" "${WORKERS[@]}" "${PER_TEST[@]}" "${files[@]}"
    summary
}

# `suite`: the whole suite, as `make test` runs it (slow tests included), the gpu-marked tests
# first. For a session whose device time allows a call of about 8 minutes after `bench`; not
# timed on a card yet (about 25 minutes in one process on the 2-core EPYC, where the slowest
# test takes 202 s).
suite() {
    BUDGET="${BUDGET:-465}" # timeout_s 480, less 15 s
    local gpu=100 rest=450 paths=(tests src/inpaintssl) nworkers=12 gpu_nworkers=6 # pyproject's testpaths
    if [[ "$SMOKE" == 1 ]]; then
        BUDGET="${BUDGET_SMOKE:-900}"
        gpu=300 rest=500 paths=(tests/training/test_training_device.py) nworkers=2 gpu_nworkers=2
    fi
    setup
    pytest_options 300 "$nworkers" "$gpu_nworkers"
    gpu_tests "$gpu" 120
    stage "suite: not gpu" "$rest" 0 bash -c 'set -o pipefail; "$0" -m pytest -p no:cacheprovider -q \
        -m "not gpu" "${@:2}" --durations 20 2>&1 | tee "$1"' \
        "$PYTHON" "$OUT/tests_suite.log" "${WORKERS[@]}" "${PER_TEST[@]}" "${paths[@]}"
    summary
}

case "${1:-}" in
    wheels) wheels ;;
    setup)
        BUDGET="${BUDGET:-120}"
        setup
        summary
        ;;
    bench | tests | suite) "$1" ;;
    *)
        echo "usage: bash benchmarks/gpu_session.sh wheels|setup|bench|tests|suite" >&2
        exit 2
        ;;
esac
