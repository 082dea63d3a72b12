"""The example plugin in ``examples/plugin_example`` installs with pip and works through the registry.

The package is pip-installed (``pip install --target``) into a folder of its own and exercised in
fresh subprocesses that have that folder on their path: entry points are read from the installed
metadata, as a user's process would, while the environment itself is never changed, so parallel
test workers cannot uninstall it under each other.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from plugin_install import ROOT, Installed, pip_install

pytestmark = pytest.mark.slow

PLUGIN = ROOT / "examples" / "plugin_example"
DISTRIBUTION = "inpaintssl-pixel-shuffle"
NAME = "local_pixel_shuffle"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Install a copy (the build writes build/ and egg-info next to the sources) into a folder of its own."""
    root = tmp_path_factory.mktemp("plugin")
    source, site = root / "plugin_example", root / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return pip_install(source, site)


def test_plugins_command_lists_the_task(installed: Installed) -> None:
    result = installed.run("-m", "inpaintssl", "plugins")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.split()[:1] == [NAME]]
    assert len(lines) == 1, result.stdout
    assert f"plugin from {DISTRIBUTION} 0.1.0" in lines[0]
    assert "[inpaintssl_pixel_shuffle:LocalPixelShuffle]" in lines[0]


def test_pretrains_through_the_api(installed: Installed, tmp_path: Path) -> None:
    run_dir = tmp_path / "pre"
    script = textwrap.dedent(
        f"""
        import json, math
        import inpaintssl as issl
        from inpaintssl.registry import PRETEXT_TASKS
        from inpaintssl_pixel_shuffle import LocalPixelShuffle

        result = issl.pretrain({{
            "data": {{"dataset": "synthetic",
                      "params": {{"size": [16, 16], "num_images": 8, "num_val": 4, "num_test": 4}}}},
            "model": {{"params": {{"depth": 2, "base_width": 4}}}},
            "pretext": {{"task": "{NAME}", "patch_size": 4, "bank_size": 4}},
            "optim": {{"max_epochs": 1, "batch_size": 4}},
            "run": {{"output_dir": {str(run_dir)!r}, "device": "cpu", "quiet": True}},
        }})
        task = PRETEXT_TASKS.build("{NAME}", patch_size=4, bank_size=4)
        print(json.dumps({{
            "is_plugin_class": isinstance(task, LocalPixelShuffle),
            "epochs": result.epochs_run,
            "loss_finite": math.isfinite(result.best_val_loss),
            "checkpoint": str(result.checkpoint),
        }}))
        """
    )
    result = installed.run("-c", script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "is_plugin_class": True,
        "epochs": 1,
        "loss_finite": True,
        "checkpoint": str(run_dir / "checkpoints" / "best"),
    }
    assert f"task: {NAME}" in (run_dir / "config.yaml").read_text()
    # The run record names the plugin's entry point, distribution and version beside the built-ins.
    components = json.loads((run_dir / "manifest.json").read_text())["components"]
    assert components["pretext_tasks"] == {
        NAME: f"plugin inpaintssl_pixel_shuffle:LocalPixelShuffle from distribution {DISTRIBUTION} 0.1.0"
    }
    assert components["samplers"] == {
        "poisson_disc": "built-in inpaintssl.corruption.samplers:PoissonDiscSampler"
    }
    assert components["datasets"] == {"synthetic": "built-in inpaintssl.data.synthetic:SyntheticShapes"}
    assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + the one epoch


@pytest.mark.parametrize(
    "target",
    [
        "tests/corruption/test_corruption_contracts.py",
        "tests/studies/test_studies_grid.py::test_every_registered_task_and_sampler_expands",
    ],
)
def test_registry_parametrized_tests_accept_it(installed: Installed, target: str) -> None:
    result = installed.run("-m", "pytest", target, "-k", NAME, "-q", "-p", "no:cacheprovider")
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_plugin_own_tests_pass(installed: Installed) -> None:
    tests = str(installed.source / "tests")
    result = installed.run("-m", "pytest", tests, "-q", "-p", "no:cacheprovider", cwd=installed.source)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
