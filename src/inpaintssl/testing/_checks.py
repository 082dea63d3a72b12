"""What every contract check shares."""

from __future__ import annotations


def check(condition: bool, message: str) -> None:
    """Fail a contract check with ``message`` unless ``condition`` holds."""
    # Explicit raise instead of `assert`: the checks must still run under `python -O`.
    if not condition:
        raise AssertionError(message)


class Contract:
    """What every contract class shares: a subclass named ``Test*`` is collected by pytest."""

    @classmethod
    def check_names(cls) -> list[str]:
        """Names of all check methods, e.g. to parametrize over them."""
        return sorted(name for name in dir(cls) if name.startswith("test_"))
