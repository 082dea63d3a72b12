"""The command line's parsers, walked: the CLI tests check every subcommand's arguments with it.

Imported by the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def subparsers(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand's parser under ``parser``, with its path of command names, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = (*prefix, name)
                yield path, sub
                yield from subparsers(sub, path)
