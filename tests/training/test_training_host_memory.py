"""``run.reuse_host_memory``: freed large blocks are reused instead of page-faulted back in.

Measured in fresh processes (the setting is process-wide): the minor page faults of allocating
and dropping a 64 MiB tensor ten times after twenty such warm-up allocations. glibc's default
serves each with a fresh ``mmap`` (about 16,000 faults per allocation with 4 KiB pages); the
tuned heap serves them from memory it already touched.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from inpaintssl.config import RunConfig
from inpaintssl.models import cpu_weight_gradient
from inpaintssl.training.context import run_session
from inpaintssl.training.host_memory import keep_freed_host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

_PROBE = """
import json, resource, sys
import torch
from inpaintssl.config import RunConfig
from inpaintssl.training.context import run_session

def faults_of_repeated_allocations():
    for _ in range(20):  # the heap grows to its steady state first
        torch.empty(16 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB of float32
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

run = RunConfig(output_dir=sys.argv[1], device="cpu", reuse_host_memory=sys.argv[2] == "on")
with run_session(run):
    inside = faults_of_repeated_allocations()
print(json.dumps({"faults": inside}))
"""


def _faults(tmp_path: Path, mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / mode), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    faults: int = json.loads(done.stdout.strip().splitlines()[-1])["faults"]
    return faults


def test_reused_host_memory_stops_the_page_faults_of_large_allocations(tmp_path: Path) -> None:
    if not GLIBC:
        assert keep_freed_host_memory() is False  # nothing is changed off glibc
        return
    default, reused = _faults(tmp_path, "off"), _faults(tmp_path, "on")
    pages_per_allocation = 64 * 2**20 // 4096
    # glibc maps every 64 MiB block afresh by default ...
    assert default >= 10 * pages_per_allocation * 0.9
    # ... and with the setting reuses the block it touched before.
    assert reused < pages_per_allocation // 4


def test_keep_freed_host_memory_applies_on_glibc_only_in_a_fresh_process() -> None:
    # The module's example, run where its process-wide effect cannot reach the test process.
    probe = (
        "import platform\n"
        "from inpaintssl.training.host_memory import keep_freed_host_memory\n"
        "applied = keep_freed_host_memory()\n"
        "expected = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'\n"
        "print(applied, expected)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    applied, expected = done.stdout.split()
    assert applied == expected == str(GLIBC)


def test_host_memory_doctest_is_skipped_in_the_test_process() -> None:
    import doctest

    from inpaintssl.training import host_memory

    examples = [ex for test in doctest.DocTestFinder().find(host_memory) for ex in test.examples]
    calls = [ex for ex in examples if "keep_freed_host_memory()" in ex.source]
    assert calls and all(ex.options.get(doctest.SKIP) for ex in calls)


def test_run_session_sets_no_weight_gradient_kernel_for_the_thread(tmp_path: Path) -> None:
    # The kernel reaches the layers through build_backbone, not a setting other code could see.
    run = RunConfig(output_dir=tmp_path / "run", device="cpu", cpu_weight_gradient="onednn")
    with run_session(run):
        assert cpu_weight_gradient() == "auto"
    assert cpu_weight_gradient() == "auto"


def test_config_fields_defaults_and_bad_values_name_the_field() -> None:
    run = RunConfig()
    assert run.reuse_host_memory is False and run.cpu_weight_gradient == "auto"
    with pytest.raises(ValueError, match="cpu_weight_gradient"):
        RunConfig.model_validate({"cpu_weight_gradient": "mkl"})
    with pytest.raises(ValueError, match="reuse_host_memory"):
        RunConfig.model_validate({"reuse_host_memory": "sometimes"})
