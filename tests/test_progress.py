"""Progress reports: a live bar on a terminal, one plain line per epoch in a log."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import inpaintssl as issl
from inpaintssl.progress import live_progress, progress_bar, progress_iter
from study_helpers import tiny_pretrain_config

CONTROL = re.compile(r"[\r\x1b\x08]")  # carriage return, escape sequences, backspace


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pretrain_into_a_log_file_prints_one_plain_line_per_epoch(tmp_path: Path) -> None:
    log = tmp_path / "job.err"
    with log.open("w", encoding="utf-8") as handle, contextlib.redirect_stderr(handle):
        issl.pretrain(tiny_pretrain_config(tmp_path / "run", optim={"max_epochs": 3}, run={"quiet": False}))
    text = log.read_text(encoding="utf-8")
    assert not CONTROL.search(text), repr(text[:300])
    epochs = [line for line in text.splitlines() if line.startswith("pretrain: epoch ")]
    assert [line.split(",")[0] for line in epochs] == [f"pretrain: epoch {i}/3" for i in (1, 2, 3)]
    assert all(re.search(r", train=\S+, val=\S+, lr=\S+ \[\d+\.\d s\]$", line) for line in epochs)
    assert "evaluate" not in text, "per-batch bars stay silent in a log"


def test_a_terminal_gets_a_redrawing_bar() -> None:
    with contextlib.redirect_stderr(_Terminal()) as err:
        assert live_progress()
        bar = progress_bar(total=2, desc="fit", unit="epoch", lines=True)
        bar.update(1)
        bar.close()
    assert "\r" in err.getvalue()


@pytest.mark.parametrize("lines", [False, True])
def test_off_a_terminal_fine_grained_bars_are_silent_and_coarse_ones_print_lines(lines: bool) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert not live_progress()
        assert list(progress_iter(range(3), desc="cases", unit="case", lines=lines)) == [0, 1, 2]
    expected = [f"cases: case {i}/3" for i in (1, 2, 3)] if lines else []
    assert [line.split(" [")[0] for line in err.getvalue().splitlines()] == expected


def test_disabled_reports_print_nothing_even_on_a_terminal() -> None:
    with contextlib.redirect_stderr(_Terminal()) as err:
        list(progress_iter(range(3), desc="x", disable=True, lines=True))
    assert err.getvalue() == ""


def test_a_closed_stderr_keeps_progress_lines_off_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    # Python started with stderr closed (`inpaintssl pretrain ... 2>&-`) has sys.stderr None, and
    # print(file=None) writes to stdout, where a pipeline reads the command's JSON summary.
    monkeypatch.setattr(sys, "stderr", None)
    assert not live_progress()
    assert list(progress_iter(range(2), desc="cases", unit="case", lines=True)) == [0, 1]
    bar = progress_bar(total=2, desc="pretrain", unit="epoch", lines=True)
    bar.update(1)
    bar.close()
    assert capsys.readouterr().out == ""
