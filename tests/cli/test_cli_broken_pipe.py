"""A reader of stdout that stops early (``| head``) is not an error; other broken pipes still are."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inpaintssl import cli
from inpaintssl.cli import main

# A pipe holds 64 KiB on Linux (16-64 KiB on macOS) and Python buffers 8 KiB more: output well
# beyond both is still being written when the reader leaves, whatever the timing.
_KEYS = 10_000


def _big_config(tmp_path: Path) -> Path:
    """A config whose ``config show`` prints about 200 kB: free-form ``data.params`` are echoed back."""
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"data": {"params": {f"key_{i:05d}": i for i in range(_KEYS)}}}))
    return path


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "inpaintssl", "config", "show", "pretrain", str(_big_config(tmp_path))]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()  # like `head -1`: one line, then the pipe's read end closes
        proc.stdout.close()
        err = proc.stderr.read().decode()
        status = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert first == b"data:\n"
    # Not "inpaintssl config: error: [Errno 32] Broken pipe", nor Python's "Exception ignored".
    assert err == "", err
    assert status == 128 + 13  # SIGPIPE's status, as a shell reports `yes | head`


@pytest.mark.skipif(sys.platform == "win32", reason="closes a file descriptor in a POSIX shell")
def test_a_closed_stdout_is_not_an_error() -> None:
    done = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", sys.executable, "-m", "inpaintssl", "config", "show", "pretrain"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_pipe_other_than_stdout_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_worker_pipe(args: object) -> int:
        print("some output")  # stdout itself is fine
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_plugins", broken_worker_pipe)
    assert main(["plugins"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "some output\n"
    assert captured.err == "inpaintssl plugins: error: [Errno 32] Broken pipe\n"


def test_a_stderr_reader_that_leaves_early_ends_the_command_quietly() -> None:
    # `inpaintssl pretrain ... 2>&1 | head`: the progress lines go to stderr, whose pipe breaks first.
    # The error message the handler then printed hit the same broken pipe, and the command ended
    # with Python's status 1 (a traceback nobody could read) instead of the documented 141.
    script = (
        "import sys\n"
        "from inpaintssl import cli\n"
        "def chatty(args):\n"
        "    for i in range(100_000):\n"
        "        print(f'progress line {i:06d}', file=sys.stderr)\n"
        "    return 0\n"
        "cli._cmd_plugins = chatty\n"
        "sys.exit(cli.main(['plugins']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stderr.readline()
        proc.stderr.close()
        out = proc.stdout.read()
        status = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert first == b"progress line 000000\n"
    assert (status, out) == (128 + 13, b"")


def test_an_error_message_that_cannot_reach_stderr_does_not_become_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class _GoneReader(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    def broken_stderr(args: object) -> int:
        print("progress", file=sys.stderr)  # raises, as a progress line does under `2>&1 | head`
        return 0

    def bad_config(args: object) -> int:
        raise ValueError("a user error whose message has nowhere to go")

    monkeypatch.setattr(sys, "stderr", _GoneReader())
    monkeypatch.setattr(cli, "_cmd_plugins", broken_stderr)
    assert main(["plugins"]) == 128 + 13
    monkeypatch.setattr(cli, "_cmd_plugins", bad_config)
    assert main(["plugins"]) == 2  # still the command's own failure, said or not
