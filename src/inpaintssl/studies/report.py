"""A study's report: its tables (CSV + Markdown) and figures (PNG + PDF) in Markdown and HTML pages.

What goes in depends on the study (see :mod:`inpaintssl.studies.runner`): every report but
the demo's has the status of the planned runs, counted as ``experiment status`` counts them (runs
not started and stale ones included), and the Dice table; ``pretext_design`` adds Table 2, Table 3 and
Figures 3/4 (one per pretext task); ``transfer_design`` Figure A1 and the strategy ranking;
``data_scaling`` Figure 5, its power-law fits and the labels-needed estimate; ``clinical`` Figures
6 and 7, the agreement table and the per-image Wilcoxon test; ``demo`` the SSL-vs-supervised
summary, the runs and their learning curves, a corruption panel and example segmentations
(:mod:`inpaintssl.studies.demo`). A part that the results cannot support yet (an unfinished study)
is listed with the reason instead of failing the report. The pages are rendered and written,
atomically, by :mod:`inpaintssl.analysis.pages`.

A comparison means something only between converged models, so every report says which runs
converged (:mod:`inpaintssl.training.convergence`, the verdict each run recorded): the paper
studies' ``results.csv`` has a ``converged`` column (1, 0, or empty for a run that recorded no
verdict), ``status.csv`` counts the finished runs that did not converge, and the page says how
many of each arm did not (the demo's ``runs.csv`` and learning curves say it there).

The report folder's ``report_manifest.json`` lists the files the report wrote; the next report
into that folder removes those it no longer writes (a figure of a pretext task dropped from the
grid), and never a file it did not write. The demo, which writes the same files every time, has
none.

Example:
    >>> import tempfile, pathlib
    >>> from inpaintssl.studies.spec import StudySpec
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> files = write_report(StudySpec(study="clinical", output=out), output=out / "report")
    >>> files.markdown.name, files.html.name
    ('report.md', 'report.html')
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from inpaintssl.analysis import clinical, paper_tables
from inpaintssl.analysis import figures as plots
from inpaintssl.analysis.figures import FigureFiles
from inpaintssl.analysis.pages import ReportParts, write_pages
from inpaintssl.analysis.summaries import pooled_fractions, with_mean_class
from inpaintssl.analysis.table import Table
from inpaintssl.atomic import atomic_write_text
from inpaintssl.studies.database import ForeignHostError
from inpaintssl.studies.grid import Job, StudyPlan, expand_study
from inpaintssl.studies.merge import MergeReport, merge_results
from inpaintssl.studies.queue import RunRecord
from inpaintssl.studies.results import load_results, load_runs
from inpaintssl.studies.spec import StudySpec, load_spec
from inpaintssl.studies.status import planned_runs
from inpaintssl.warning_format import warn_each_time

__all__ = ["ReportFiles", "StudyReport", "report_study", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """The files of a report.

    Attributes:
        markdown: ``report.md``.
        html: ``report.html``.
        tables: CSV and Markdown files of every table.
        figures: PNG and PDF files of every figure.
        skipped: ``(part, reason)`` of parts the results could not support.
        removed: Files an earlier report into the folder wrote that this one no longer writes,
            removed (``report_manifest.json``).
    """

    markdown: Path
    html: Path
    tables: tuple[Path, ...] = ()
    figures: tuple[Path, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    removed: tuple[Path, ...] = ()


MANIFEST = "report_manifest.json"


def _verdict(run: RunRecord) -> bool | None:
    """A finished run's recorded convergence verdict; ``None`` when it recorded none."""
    value = (run.result or {}).get("converged") if run.status == "done" else None
    return None if value is None else bool(value)


def _status_table(plan: StudyPlan, runs: Mapping[str, RunRecord], *, stale_after_s: float) -> Table:
    """The planned runs by kind and status, counted as ``experiment status`` counts them.

    From the plan, not the database alone: runs no database records yet (another shard's, a label
    fraction added to the spec) are ``not started``, and a ``running`` run whose worker is gone is
    stale (:func:`~inpaintssl.studies.status.planned_runs`). Counted from the database, an
    unfinished study read as finished and a killed one as busy.
    """
    counts: dict[tuple[str, str], int] = {}
    stalled: dict[tuple[str, str], int] = {}
    for planned in planned_runs(plan, runs, stale_after_s=stale_after_s):
        key = (planned.job.kind, planned.status)
        counts[key] = counts.get(key, 0) + 1
        stalled[key] = stalled.get(key, 0) + (planned.run is not None and _verdict(planned.run) is False)
    return Table(
        # Only finished runs have a verdict: the column is empty on the other rows.
        tuple(
            (kind, status, n, stalled[(kind, status)] if status == "done" else None)
            for (kind, status), n in sorted(counts.items())
        ),
        name="status",
        title="Planned runs by kind and status (not started: no database records it yet; stale: its "
        "worker is gone, the next `experiment run` reclaims it); not_converged: finished runs whose "
        "training did not converge",
        columns=("kind", "status", "runs", "not_converged"),
    )


def _convergence_note(runs: Mapping[str, RunRecord]) -> str | None:
    """How many finished runs of each arm did not converge, for the page; ``None`` before any finished."""
    arms: dict[str, list[RunRecord]] = {}
    for run in runs.values():
        if run.status == "done":
            arms.setdefault(str(run.labels.get("arm", run.kind)), []).append(run)
    if not arms:
        return None
    judged = [r for found in arms.values() for r in found if _verdict(r) is not None]
    stalled = {arm: [r.id for r in found if _verdict(r) is False] for arm, found in sorted(arms.items())}
    unknown = sum(map(len, arms.values())) - len(judged)
    where = "per run: the `converged` column of [results.csv](results.csv); inpaintssl.training.convergence"
    if not any(stalled.values()):
        note = f"Convergence: all {len(judged)} finished runs with a verdict converged ({where})."
    else:
        per_arm = "; ".join(
            f"{arm} {len(ids)} of {len(arms[arm])}" + (f" ({paper_tables.named_runs(ids)})" if ids else "")
            for arm, ids in stalled.items()
        )
        note = (
            f"Convergence: {sum(map(len, stalled.values()))} of {len(judged)} finished runs did not "
            f"converge ({where}): {per_arm}. Warning: comparisons involving unconverged runs are between "
            "unfinished networks, whose scores may understate what their method reaches; a difference "
            "there may be one of training, not of method. Each such run's learning_curve.png and the "
            "warning it printed name the setting to change (for a new run)."
        )
    if unknown:
        note += f" {unknown} finished runs recorded no verdict (`converged` empty)."
    return note


def _with_convergence(results: Table, runs: Mapping[str, RunRecord]) -> Table:
    """``results`` with each row's run's verdict in a last ``converged`` column (1, 0 or empty)."""
    verdicts = {run_id: _verdict(run) for run_id, run in runs.items()}
    # Appended at the end: code that reads results.csv by position keeps its columns.
    columns = results.columns if "converged" in results.columns else (*results.columns, "converged")
    rows = []
    for row in results:
        verdict = verdicts.get(str(row.get("run_id")))
        rows.append({**row, "converged": None if verdict is None else int(verdict)})
    return Table(rows, name=results.name, title=results.title, columns=columns)


@dataclass(frozen=True)
class _MissingSSL:
    """The planned SSL strategies that lack results, for Table 3 (:func:`_missing_ssl`), and the
    label fractions the plan's SSL runs have, highest first."""

    untested: Mapping[str, paper_tables.UntestedStrategy]
    incomplete: Mapping[str, paper_tables.IncompleteStrategy]
    fractions: tuple[float, ...]


def _missing_ssl(plan: StudyPlan, results: Table, runs: Mapping[str, RunRecord]) -> _MissingSSL:
    """The SSL strategies the spec plans without SSL rows in ``results``, and those without some.

    A strategy with no rows is untested; one with rows whose planned runs at the label fractions
    Table 3 pools lack some (no Dice rows of the strategy at the run's label fraction and subset
    seed) is ranked on fewer items than planned. Each comes with its runs that have no results,
    and why.
    """
    ssl = results.select(arm="ssl")
    measured = {
        (str(row.get("strategy")), row.get("label_fraction"), row.get("subset_seed"))
        for row in ssl.select(metric="dice_mean")
    }
    present = {str(name) for name in ssl.unique("strategy")}
    planned: dict[str, list[Job]] = {}
    for job in plan.finetune_jobs():
        if job.labels.get("arm") == "ssl":
            planned.setdefault(str(job.labels.get("strategy")), []).append(job)
    untested, incomplete = {}, {}
    for name, jobs in planned.items():
        if name not in present:
            baselines = sorted(
                {str(b.labels["strategy"]) for j in jobs if (b := plan.baseline_of(j)) is not None}
            )
            untested[name] = paper_tables.UntestedStrategy(
                " + ".join(baselines) or None, _runs_without_results(jobs, runs)
            )
            continue
        fractions = tuple(sorted({float(j.labels["label_fraction"]) for j in jobs}, reverse=True))
        pooled = set(pooled_fractions(fractions))
        missing = [
            j
            for j in jobs
            if j.labels["label_fraction"] in pooled
            and (name, j.labels["label_fraction"], j.labels["subset_seed"]) not in measured
        ]
        if missing:
            incomplete[name] = paper_tables.IncompleteStrategy(
                fractions, _runs_without_results(missing, runs)
            )
    every = {float(job.labels["label_fraction"]) for jobs in planned.values() for job in jobs}
    return _MissingSSL(untested, incomplete, tuple(sorted(every, reverse=True)))


def _incomplete_note(
    parts: ReportParts, incomplete: Mapping[str, paper_tables.IncompleteStrategy]
) -> str | None:
    """The ranking's notes on strategies ranked without some planned SSL runs, for the page.

    Args:
        parts: The report's parts, the ranking among them once built.
        incomplete: The strategies the ranking was given as lacking some planned SSL runs
            (:func:`_missing_ssl`): their ranked rows are the ones noted, whatever their notes say.
    """
    # Which rows is data (the strategies the ranking was told of, ranked), not the note's wording:
    # a reworded note is still carried, and a ranked one's note says why it counts fewer items.
    notes = [
        f"{row['strategy']!r} {row['note']}"
        for item, _ in parts.parts
        if isinstance(item, Table) and item.name == "table3_ranking"
        for row in item
        if row["rank"] is not None and str(row["strategy"]) in incomplete
    ]
    if not notes:
        return None
    return (
        "Warning: strategies ranked without some of their planned SSL runs (their p-values rest on "
        f"fewer items than planned; the ranking's note column): {'; '.join(notes)}."
    )


def _runs_without_results(jobs: Sequence[Job], runs: Mapping[str, RunRecord]) -> str:
    """``runs ft-a, ft-b failed (ValueError: ...); ft-c not started``: a strategy's runs by status."""
    states: dict[str, list[str]] = {}
    for job in jobs:
        run = runs.get(job.id)
        status = (
            "not started"
            if run is None
            else "done without test results"
            if run.status == "done"
            else run.status
        )
        states.setdefault(status, []).append(job.id)
    parts = []
    for status, ids in sorted(states.items()):
        error = next((runs[i].error for i in ids if runs.get(i) is not None and runs[i].error), None)
        first = f" ({error.strip().splitlines()[0][:160]})" if status == "failed" and error else ""
        parts.append(f"{paper_tables.named_runs(ids)} {status}{first}")
    return f"run{'s' if len(jobs) > 1 else ''} " + "; ".join(parts)


_CAPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "figA1_transfer": "Figure A1: Dice per test item by transfer strategy and learning rates",
        "fig5_scaling": "Figure 5: Dice vs amount of pretraining data, with power-law fits",
        "fig6_percent_error": "Figure 6: median percent error of the clinical metrics",
        "fig7_per_image": "Figure 7: per-image percent error, SSL vs supervised",
        "fig3_dice": "Dice vs label fraction",
    }
)


def _study_parts(
    spec: StudySpec, plan: StudyPlan, results: Table, runs: Mapping[str, RunRecord], parts: ReportParts
) -> Mapping[str, paper_tables.IncompleteStrategy]:
    """Add the study's own parts to ``parts``.

    Returns:
        The strategies its ranking was built with as lacking some planned SSL runs (none when
        the study has no ranking, or it could not be built), for the page's note.
    """
    incomplete: dict[str, paper_tables.IncompleteStrategy] = {}

    def figure(name: str, plot: Callable[..., FigureFiles], caption: str = "", **options: str) -> None:
        parts.figure(name, caption or _CAPTIONS[name], functools.partial(plot, results, **options))

    def table(name: str, build: Callable[..., Table], **options: float | None) -> None:
        parts.table(name, functools.partial(build, results, **options))

    def ranking(name: str) -> None:
        # Planned strategies whose runs failed or have not finished are listed too, unranked, and
        # a ranked one that lacks some of its runs says so.
        def build() -> Table:
            missing = _missing_ssl(plan, results, runs)
            table = paper_tables.table3_ranking(
                results,
                # The plan's fractions, not the results': while only the 100%-label runs have
                # finished, the results' would rank on those, which sec. 2.5.3 leaves out.
                label_fractions=pooled_fractions(missing.fractions),
                untested=missing.untested,
                incomplete=missing.incomplete,
            )
            incomplete.update(missing.incomplete)  # only once the ranking exists to carry their notes
            return table

        parts.table(name, build)

    study = spec.study
    if study == "pretext_design":
        table("table 2", paper_tables.table2_l2_norm)
        ranking("table 3")
        for task in [str(t) for t in results.select(arm="ssl").unique("task") if t is not None]:
            caption = f"Figure 3/4: Dice vs label fraction ({task})"
            figure(f"fig3_dice_{task}", plots.plot_dice_vs_label_fraction, caption, task=task)
    elif study == "transfer_design":
        figure("figA1_transfer", plots.plot_transfer_boxplots)
        ranking("strategy ranking")
    elif study == "data_scaling":
        figure("fig5_scaling", plots.plot_dice_vs_pretraining_data)
        table("power-law fits", paper_tables.power_law_table)
        table("labels needed", paper_tables.labels_needed_table, target=spec.target_dice)
        caption = "Dice vs label fraction per amount of unlabelled data"
        figure("fig3_dice", plots.plot_dice_vs_label_fraction, caption)
    elif study == "demo":
        from inpaintssl.studies.demo import demo_parts  # the demo's extras need torch and the data

        demo_parts(spec, results, parts)
    else:
        figure("fig6_percent_error", plots.plot_percent_error_bars)
        figure("fig7_per_image", plots.plot_ssl_vs_supervised)
        table("clinical agreement", clinical.agreement_table)
        table("per-image comparison", clinical.per_image_comparison_table)
        figure("fig3_dice", plots.plot_dice_vs_label_fraction)
    return MappingProxyType(incomplete)


def write_report(
    spec: StudySpec,
    *,
    output: str | Path | None = None,
    results: Table | None = None,
    notes: Sequence[str] = (),
) -> ReportFiles:
    """Write a study's tables, figures, ``results.csv``, ``report.md`` and ``report.html``.

    Files an earlier report wrote into ``output`` that this one does not (listed in its
    ``report_manifest.json``) are removed; other files there are left alone. (Not for the demo,
    which writes the same files every time.)

    Args:
        spec: The study.
        output: Report folder (default ``<study output>/report``).
        results: The results table (default: loaded from the study's database files).
        notes: Paragraphs shown under the title (e.g. the demo's settings and timing).

    Returns:
        The written files and the parts that were skipped, with why.
    """
    folder = Path(output) if output is not None else spec.output_dir() / "report"
    folder.mkdir(parents=True, exist_ok=True)
    results = load_results(spec) if results is None else results
    runs = load_runs(spec)
    # The demo's report keeps the files it always had: its summary table holds the Dice, its runs
    # table the status and each run's convergence, and the pages show its tables (no Markdown copies).
    demo = spec.study == "demo"
    parts = ReportParts(folder, markdown_tables=not demo)
    plan = expand_study(spec)
    if not demo:
        parts.table("status", lambda: _status_table(plan, runs, stale_after_s=spec.stale_after_s))
        parts.table("dice", lambda: paper_tables.dice_table(results))
    incomplete = _study_parts(spec, plan, results, runs, parts)
    # The demo's results.csv has one row per slice and class, with the class average as "mean".
    measured = with_mean_class(results) if demo else _with_convergence(results, runs)
    written = measured.to_csv(folder / "results.csv")
    convergence = None if demo else _convergence_note(runs)
    intro = [
        f"Study `{spec.study}`; results from `{spec.database_template()}`; "
        "every measurement: [results.csv](results.csv).",
        *([convergence] if convergence else []),
        *([ranked] if (ranked := _incomplete_note(parts, incomplete)) else []),
        *([f"Warning: {overlap}."] if (overlap := spec.pretraining_sees_test_anatomy(plan=plan)) else []),
        *notes,
    ]
    markdown, page, tables = write_pages(parts, title=spec.title, notes=intro)
    figures = [p for item, _ in parts.parts if not isinstance(item, Table) for p in item.paths]
    # The demo writes the same files every time (it stops before its report when a run failed), in
    # a folder that holds the files it always had: it has nothing stale to track.
    removed = () if demo else _replace_manifest(folder, (written, markdown, page, *tables, *figures))
    return ReportFiles(markdown, page, (written, *tables), tuple(figures), tuple(parts.skipped), removed)


def _earlier_files(manifest: Path) -> list[str]:
    """The files an earlier report listed in ``manifest``; none when there is no (readable) manifest."""
    if not manifest.is_file():
        return []  # no report wrote here yet, or one from before manifests: nothing is known to be ours
    try:
        names = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError("'files' is not a list of file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn_each_time(
            f"{manifest} cannot be read ({exc}): files of an earlier report that this one no longer "
            "writes are kept; delete the manifest (and any stale files) to silence this",
            UserWarning,
        )
        return []
    return names


def _replace_manifest(folder: Path, written: Sequence[Path]) -> tuple[Path, ...]:
    """Remove what the earlier report in ``folder`` wrote and this one did not; list this one's files.

    Only names the earlier manifest lists are removed, and only plain files inside ``folder``: an
    entry that leads elsewhere (``..``, an absolute path, a link) is skipped, so a damaged or
    edited manifest cannot delete what the report did not write. Stale files go before the new
    manifest is written (atomically): a report killed in between leaves them listed, and the next
    report removes them.
    """
    manifest = folder / MANIFEST
    current = {path.relative_to(folder).as_posix() for path in written}
    removed: list[Path] = []
    inside = folder.resolve()
    for name in _earlier_files(manifest):
        path = folder / name
        if name in current or name == MANIFEST or inside not in path.resolve().parents:
            continue
        if path.is_symlink() or not path.is_file():
            continue  # gone already, or not a file the report wrote
        path.unlink()
        removed.append(path)
    atomic_write_text(manifest, json.dumps({"files": sorted(current)}, indent=1) + "\n")
    return tuple(removed)


@dataclass(frozen=True)
class StudyReport:
    """What :func:`report_study` did.

    Attributes:
        files: The report's files.
        merged: The result files merged first (and those left out, with why).
        database: The database they were merged into.
        left_out: Recorded runs the spec does not plan (an earlier version of it), not reported.
    """

    files: ReportFiles
    merged: MergeReport
    database: Path
    left_out: int


def report_study(
    spec: StudySpec | Mapping[str, Any] | str | Path, *, output: str | Path | None = None
) -> StudyReport:
    """Merge the result files no driver merged yet, then write the report of the spec's runs.

    A driver killed after its workers finished leaves their result files unmerged; a report on
    the database's host takes them in first (read-only when there is nothing to merge). From
    another host, where a running study's files wait for its driver, the report shows the runs
    merged so far and warns. Result files that could not be merged are named in warnings.

    Args:
        spec: The study spec (a model, a mapping or a YAML/JSON file).
        output: Report folder (default ``<study output>/report``).

    Raises:
        inpaintssl.config.ConfigError: Invalid spec.

    Example:
        >>> done = report_study("spec.yaml")          # doctest: +SKIP
        >>> done.files.html, done.merged.merged       # doctest: +SKIP
        (PosixPath('out/report/report.html'), 0)
    """
    spec = load_spec(spec)
    try:
        merged = merge_results(spec)
    except ForeignHostError as exc:
        # A running study's driver merges its tasks' files as they end; its host alone may.
        warn_each_time(
            f"{spec.database_path()} belongs to host {exc.owner!r} and this is host {exc.here!r}: the "
            f"result files in {spec.results_dir()} not merged yet are left to that host (its driver "
            "merges them as tasks end, or run `experiment report` there); this report shows the runs "
            "merged so far",
            UserWarning,
        )
        merged = MergeReport()
    merged.warn(results_dir=spec.results_dir())
    left_out = len(load_runs(spec, planned_only=False)) - len(load_runs(spec))
    files = write_report(spec, output=output)
    return StudyReport(files=files, merged=merged, database=spec.database_path(), left_out=left_out)
