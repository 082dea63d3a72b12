"""What every contract check shares."""

from __future__ import annotations


def check(condition: bool, message: str) -> None:
    """Fail a contract check with ``message`` unless ``condition`` holds."""
    # Explicit raise instead of `assert`: the checks must still run under `python -O`.
    if not condition:
        raise AssertionError(message)
