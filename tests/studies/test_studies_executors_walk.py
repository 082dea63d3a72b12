"""What a walk through docs/scaling.rst on one machine found: the driver's signals and order."""

from __future__ import annotations

import signal
import types
from pathlib import Path
from typing import Any

import pytest

from inpaintssl.signals import Terminated, terminate_as_exit
from inpaintssl.studies import ray_backend
from inpaintssl.studies.spec import ExecutorSpec


def _exit_15(signum: int, frame: Any) -> None:  # pragma: no cover - never delivered here
    raise SystemExit(signum)


class _FakeRay(types.SimpleNamespace):
    """What ``ray.init`` does to a driver's signals (ray 2.x, ``_private/worker.py``): it installs
    its own SIGTERM handler, which exits with status 15 after a C++ stack dump."""

    def __init__(self) -> None:
        super().__init__(initialized=False, shut_down=False)

    def is_initialized(self) -> bool:
        return bool(self.initialized)

    def init(self, **kwargs: Any) -> None:
        signal.signal(signal.SIGTERM, _exit_15)
        self.initialized = True

    def remote(self, function: Any) -> Any:
        return types.SimpleNamespace(options=lambda **options: function)

    def shutdown(self) -> None:
        self.shut_down = True


def test_a_ray_driver_keeps_the_command_lines_sigterm_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scancel / kill of the driver must raise Terminated (runs handed back, "terminated (SIGTERM)",
    # status 143), as with --executor slurm, not end in Ray's handler with status 15.
    fake = _FakeRay()
    monkeypatch.setattr(ray_backend, "import_optional", lambda *args, **kwargs: fake)
    with terminate_as_exit():
        ours = signal.getsignal(signal.SIGTERM)
        backend = ray_backend.RayBackend(ExecutorSpec(), results=tmp_path, quiet=True)
        assert fake.initialized
        assert signal.getsignal(signal.SIGTERM) is ours
        with pytest.raises(Terminated) as stopped:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)
        assert stopped.value.code == 143
        backend.close()
    assert fake.shut_down
