"""Every malformed input of the corpus fails at the door: clearly, quickly, leaving nothing partial.

Issue 9: each case must raise its documented error with a message naming what is wrong and where,
within a time limit (never a hang), without touching its inputs and without leaving a checkpoint,
a results table, a torn file or a temporary file behind. ``docs/reliability.rst`` must show what
the library says today.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import pytest
import yaml
from corpus import CASES, BadInputCase
from render_table import DOC, library_versions, message_of, normalise, render_page, table_row

# What a run writes before its first epoch; each is written atomically, so it is complete if present.
RUN_METADATA = frozenset({"config.yaml", "manifest.json", "splits.json"})
ROW = re.compile(
    r"^   \* - ``(?P<id>[^`]+)``\n     - (?P<category>.+)\n     - (?P<description>.+)\n"
    r"     - ``(?P<error>[^`]+)``\n     - ``(?P<message>.+)``$",
    re.MULTILINE,
)


RENDERED_WITH = re.compile(r"^\.\. Messages rendered with (?P<versions>.+)\.$", re.MULTILINE)


def _rendered_with() -> str:
    found = RENDERED_WITH.search(DOC.read_text(encoding="utf-8"))
    assert found, f"{DOC} does not say which library versions rendered it: run render_table.py"
    return found["versions"]


def _own_words_match(documented: str, error: BaseException, folder: Path) -> bool:
    """Whether ``documented`` says what ``error`` says, but for the words of the cause it quotes.

    With other versions of the libraries than the page's (``make test-oldest``), a quoted cause
    (h5py's, safetensors', torch's text) reads differently; the library's own words around it are
    the same in every environment.
    """
    message = " ".join(message_of(error).split())
    cause = error.__cause__
    quoted = "" if cause is None else " ".join(message_of(cause).split())
    if not quoted or quoted not in message:
        return False
    before, _, after = message.partition(quoted)
    head = normalise(before, folder)
    if not documented.startswith(head.removesuffix(" ...")):
        return False
    # A cut row ends in " ..." somewhere in the cause or after it: its tail is not shown.
    return documented.endswith(" ...") or documented.endswith(normalise(after, folder))


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _parses(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return isinstance(loaded, dict)


def _documented() -> dict[str, re.Match[str]]:
    return {row["id"]: row for row in ROW.finditer(DOC.read_text(encoding="utf-8"))}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_clearly_and_leaves_nothing_partial(case: BadInputCase, tmp_path: Path) -> None:
    call = case.build(tmp_path)
    before = _snapshot(tmp_path)

    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        with pytest.raises(case.error) as caught:
            call()
    # Exactly the warnings the case lists: one that says again what the error says is noise.
    said = [str(w.message) for w in told if issubclass(w.category, UserWarning)]
    said = [m for m in said if "NOT converged" not in m]  # tiny budgets; not what the case is about
    for pattern in case.warns:
        assert any(re.search(pattern, m) for m in said), f"no warning matches {pattern!r}: {said}"
    unlisted = [m for m in said if not any(re.search(pattern, m) for pattern in case.warns)]
    assert not unlisted, f"warnings the case does not list: {unlisted}"

    assert type(caught.value) is case.error, f"raised {type(caught.value).__name__}, a subclass"
    message = message_of(caught.value)
    for pattern in case.match:
        assert re.search(pattern, message), f"message lacks {pattern!r}: {message!r}"
    after = _snapshot(tmp_path)
    touched = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert not touched, f"the failed call changed or removed its inputs: {touched}"
    created = sorted(set(after) - set(before))
    leftovers = [name for name in created if Path(name).name not in RUN_METADATA]
    assert not leftovers, f"the failed call left output that looks complete or torn: {leftovers}"
    assert all(_parses(tmp_path / name) for name in created)
    documented = _documented()[case.id]["message"]
    stale = f"docs/reliability.rst is stale for {case.id!r}: run python tests/reliability/render_table.py"
    if _rendered_with() == library_versions():
        assert documented == normalise(message, tmp_path), stale
    else:
        assert documented == normalise(message, tmp_path) or _own_words_match(
            documented, caught.value, tmp_path
        ), f"{stale} (in an environment with {library_versions()})"


def test_docs_table_lists_every_case_in_corpus_order() -> None:
    documented = _documented()
    assert list(documented) == [case.id for case in CASES]
    for case in CASES:
        row = documented[case.id]
        assert (row["category"], row["description"]) == (case.category, case.description)
    # The page is exactly what the script renders (intro and rows), so a rerun changes nothing.
    rows = [table_row(case, documented[case.id]["message"]) for case in CASES]
    assert DOC.read_text(encoding="utf-8") == render_page(rows, rendered_with=_rendered_with())


def test_corpus_covers_every_category_with_distinct_cases() -> None:
    categories = {case.category for case in CASES}
    assert categories == {"config", "data", "checkpoint", "runtime"}
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert all(case.id.startswith(f"{case.category}-") for case in CASES)
    assert all(case.match and case.description for case in CASES)
