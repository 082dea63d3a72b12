"""Comparisons of evaluation tables, shared by the tests of ``issl.evaluate``.

Imported by the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import numpy as np

import inpaintssl as issl


def assert_same_table(found: issl.EvaluationTable, expected: issl.EvaluationTable) -> None:
    """The same columns and rows: numbers bit for bit, everything else equal."""
    assert found.columns == expected.columns and len(found) == len(expected)
    for name in found.columns:
        values = [row.get(name) for row in expected.rows]
        if all(isinstance(v, float) for v in values):
            np.testing.assert_array_equal(found.column(name), expected.column(name), err_msg=name)
        else:
            assert [row.get(name) for row in found.rows] == values, name
