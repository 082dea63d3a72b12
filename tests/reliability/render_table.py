"""Write ``docs/reliability.rst``: the reliability guarantees and the table of every bad input.

Runs each case of the bad-input corpus (``corpus.py`` next to this file) in a fresh temporary
folder, checks that it raises its documented error, and renders one table row per case: id,
category, what is malformed, error type, message. Run it from anywhere::

    python tests/reliability/render_table.py

Messages are normalised so that the page depends only on the corpus and the library: the case's
temporary folder becomes ``<tmp>``, terminal colour codes and pydantic's version-stamped help
links are dropped, whitespace is collapsed and long messages are cut at :data:`MAX_MESSAGE`
characters. A rerun therefore writes byte-identical output, and ``test_reliability_bad_inputs.py``
fails when the committed page no longer says what the library says.

Example:
    >>> normalise("[Errno 28] could not write /scratch/r1/run/config.yaml", Path("/scratch/r1"))
    '[Errno 28] could not write <tmp>/run/config.yaml'
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

# Cases write some inputs with the tests' shared writers (tests/dicom_helpers.py), which pytest
# finds through tests/conftest.py and a script run finds here.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from corpus import CASES, BadInputCase, CommandLineError

from inpaintssl.atomic import atomic_write_text

__all__ = [
    "DOC",
    "MAX_MESSAGE",
    "QUOTED_LIBRARIES",
    "error_name",
    "library_versions",
    "message_of",
    "normalise",
    "render_page",
    "run_case",
    "table_row",
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.rst"
MAX_MESSAGE = 360
"""Longest message shown in the table; the tests check the full message."""

QUOTED_LIBRARIES = ("torch", "numpy", "h5py", "safetensors", "nibabel", "pydicom", "pydantic", "PyYAML")
"""Libraries whose own words some messages quote (a cause's text after the library's words)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PYDANTIC_LINK = re.compile(r"For further information visit https://errors\.pydantic\.dev/\S+")


def message_of(exc: BaseException) -> str:
    """The text a user reads: ``str(exc)``, without the quotes ``str`` adds around a ``KeyError``."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def normalise(message: str, folder: Path) -> str:
    """``message`` as shown in the docs: ``folder`` -> ``<tmp>``, one line, at most :data:`MAX_MESSAGE`."""
    for prefix in sorted({str(folder.resolve()), str(folder)}, key=len, reverse=True):
        message = message.replace(prefix, "<tmp>")
    message = _PYDANTIC_LINK.sub("", _ANSI.sub("", message))
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE].rstrip() + " ..."
    return message


def library_versions() -> str:
    """The installed versions of :data:`QUOTED_LIBRARIES`, as the page records them.

    Another version words its errors its own way (h5py 3.8 "Unable to open file", 3.12 "Unable
    to synchronously open file"): the page's quotes of them hold for these versions.
    """
    return ", ".join(f"{name} {version(name)}" for name in QUOTED_LIBRARIES)


def error_name(case: BadInputCase) -> str:
    """The error column: the exception type, or ``command line`` for a CLI exit status."""
    return "command line" if case.error is CommandLineError else case.error.__name__


def run_case(case: BadInputCase, folder: Path) -> BaseException:
    """Trigger ``case`` in ``folder`` and return what it raised.

    Raises:
        RuntimeError: The case raised nothing, another type, or a message missing a pattern.
    """
    try:
        case.trigger(folder)
    except Exception as exc:  # noqa: BLE001 - every outcome is checked just below
        raised: BaseException = exc
    else:
        raise RuntimeError(f"bad-input case {case.id!r} raised nothing; expected {case.error.__name__}")
    if type(raised) is not case.error:
        raise RuntimeError(
            f"bad-input case {case.id!r} raised {type(raised).__name__}: {raised}; "
            f"expected {case.error.__name__}"
        ) from raised
    missing = [pattern for pattern in case.match if not re.search(pattern, message_of(raised))]
    if missing:
        raise RuntimeError(f"bad-input case {case.id!r}: message {message_of(raised)!r} lacks {missing}")
    return raised


def _literal(text: str) -> str:
    # An inline literal shows the message verbatim (no smart quotes, no markup) and still wraps at
    # spaces; it cannot hold a double backtick or end with one.
    if "``" in text or text.endswith("`"):
        raise ValueError(f"cannot show {text!r} as an inline literal")
    return f"``{text}``"


def table_row(case: BadInputCase, message: str) -> str:
    """The ``list-table`` row of ``case`` with its normalised ``message``."""
    cells = [
        _literal(case.id),
        case.category,
        case.description,
        _literal(error_name(case)),
        _literal(message),
    ]
    return "   * - " + "\n     - ".join(cells) + "\n"


_INTRO = """\
.. Generated by tests/reliability/render_table.py from tests/reliability/corpus.py: do not edit.
.. Messages rendered with {rendered_with}.

Reliability and bad inputs
==========================

Pretraining runs for hours, checkpoints travel between labs, and medical data arrives messy.
This page says what ``inpaintssl`` guarantees when something goes wrong, then lists every
malformed input of the test corpus with the exact error it produces.

Atomic writes
-------------

The files of a run (``config.yaml``, ``manifest.json``, ``splits.json``, ``metrics.csv``,
``test_metrics.csv``, ``val_inpainting.csv``, evaluation tables) are written to a temporary file
in the same folder (``.<name>.<random>.tmp``), flushed and renamed over the target
(:mod:`inpaintssl.atomic`), so a reader sees the old complete file or the new one, never a torn
one. A checkpoint folder is written under a temporary name, sealed with ``COMPLETE.json`` (the
sha256 of every file in it) and swapped in by renames; a folder caught half-swapped is recovered
from its ``.old`` twin, and a twin a kill left beside a complete checkpoint is removed by the next
``--resume``. A ``COMPLETE.json`` that is torn, not UTF-8, or does not list each file it seals
(at least ``model.safetensors`` and ``meta.json``) counts as damaged, and the twin is used. When
the disk fills up, the write raises ``OSError`` naming the file (also where ``safetensors``
reports it with its own ``SafetensorError``, and for the run lock itself; the command line exits
2 with that one line), the temporary file is removed and the previous checkpoint is left intact
(``runtime-disk-full-*`` below). TensorBoard is the exception: it is not the record of truth
(``metrics.csv`` is), so a failed write of its event file warns once
(``TensorBoardWriteWarning``, naming the ``tensorboard`` folder) and the run goes on without
it.

Resume after a hard kill
------------------------

Every epoch ends by writing ``checkpoints/last`` with the weights, optimizer moments,
early-stopping state, history and RNG states (``run.checkpoint_every`` sets how often). Data order
and corruption are pure functions of (seed, phase, epoch, sample index), so
``inpaintssl pretrain ... --resume`` (``run.resume=true``) continues exactly where the last
checkpoint left off: ``tests/reliability/test_reliability_resume.py`` kills real pretraining and
two-phase fine-tuning processes with ``SIGKILL`` at five seeded random moments each and checks
that every resumed run ends with the same weights, bit for bit, as a run never interrupted (CPU,
``run.deterministic``). A run killed before its first checkpoint is complete (also during its
write) starts afresh, with ``--resume`` or without: only a checkpoint (``best``, ``last``,
``best.pending`` or an ``.old`` twin) makes a folder hold a run, and each run removes the
temporaries killed writers left in the run folder, ``checkpoints/`` and ``reconstructions/``.
A new best epoch's weights wait in ``checkpoints/best.pending`` and move to ``checkpoints/best``
right after ``last`` records that epoch, so ``best`` always holds the epoch ``last`` names as the
best: a resume drops a pending best of an epoch it trains again, which on a GPU may score
otherwise the second time (``tests/training/test_training_best_weights.py``).
A resume may change only the ``run`` settings other than ``run.seed`` (data order and
corruption follow the seed), ``optim.max_epochs``, and how the data are read
(``data.num_workers``, ``data.worker_start_method``, ``data.cache_dir``); other changes are
refused, naming them. ``config.yaml`` keeps the settings the run started with; each resume that
runs with other ``run`` settings or another way of reading the data (``run.resume``,
``run.quiet`` and ``run.output_dir`` aside), or on another device, workers' start method,
Python, library version or commit, appends an entry to ``manifest.json``'s ``resumes`` list: its
time, ``resumed_from_epoch``, and each ``changed`` setting and ``environment`` entry as
``{"recorded": ..., "now": ...}``, which hold
from that epoch on (once there is an entry, every later resume adds one, empty when it is back on
the recorded values). A resume also refuses data other than the data the run started on,
naming what changed as far as the folder records it: volumes added to or removed from a subset
(``splits.json``), data files added, removed or resized (``manifest.json``'s
``data_files_sha256``), and training files rewritten in place since the pre-flight check
(``data_check.json``; for files that were only copied or touched, the message says to delete
``data_check.json``); a rewritten validation or test file gets a warning
(``runtime-resume-on-changed-data`` below). Which files are training files comes from the sets
``data_check.json`` records for each case (a file that served the training set and another set
counts as a training file), so a validation case with the same volume id as a training case
(separate ``train/`` and ``val/`` folders) is not mistaken for it; a ``data_check.json`` written
before it recorded sets is judged by the volume ids in its case names, as it was then. A new
``optim.max_epochs`` carries an interrupted ``step_decay`` run on to the new budget, recorded in
its ``config.yaml`` (a budget the run has already trained past is refused); a ``warmup_cosine``
run refuses it, since its schedule is laid over the whole budget and would jump mid-run. A run
that has finished, by its budget or by early stopping, is not extended (it holds its best weights
and its schedule has run out), which is an error that says to start a new run. A run killed after
writing ``config.yaml`` but before the rest of its record gets ``splits.json`` and
``manifest.json`` on ``--resume``; a torn ``splits.json`` or ``manifest.json`` gets a warning
naming it and is written again, and ``metrics.csv`` is rewritten from the checkpoint's history,
each epoch once. ``checkpoints/best`` is checked with ``last`` before any training (the run ends
by loading its best weights): a missing or damaged one is refused at once, naming the folder and
file. TensorBoard drops what a killed process logged for the epochs
its resume redoes. Before the first step, every run reads each data case it uses in full (the
pre-flight check: truncated files, non-finite voxels, label values, image/label geometry) and
records the cases that passed in ``data_check.json`` with each file's size and modification time
and the sets (``train``, ``val``, ``test``) each case served; a resumed run reads again only the
cases whose files changed since, so a requeued job starts training at once.
Without ``--resume``, a run refuses a folder that already holds checkpoints. ``SIGTERM``
(``scancel``, a preemption) ends a command with exit status 143 through the same clean-up as
Ctrl-C (lock and temporaries removed, the last checkpoint kept), with one line that says so:
``inpaintssl pretrain: terminated (SIGTERM); the same command with --resume continues from the
last checkpoint``. This holds also when the signal arrives while Python runs a finaliser, which
drops exceptions (the signal is then sent again), in a study's local worker processes, which
hand their runs back to the queue, and when the signal goes to the whole process group, as
``scancel`` sends it, ending the DataLoader workers too (their deaths are no error then)
(:mod:`inpaintssl.signals`).

Predictions resume
------------------

``predict`` writes into a hidden folder beside ``--output`` and moves the files in only when every
case is done, so ``--output`` never holds a partial prediction. Each finished case is recorded in
that folder once its files are written and synced; a prediction killed, preempted, stopped with
Ctrl-C or ``SIGTERM``, or stopped by an error at a later case leaves the folder, and the next
prediction into the same ``--output`` with the same weights and options takes the finished cases
whose input files are unchanged (path, size, modification time), without reading their scans
again, and predicts the rest (:mod:`inpaintssl.inference.resume`).
``tests/inference/test_inference_predict_resume.py`` kills a prediction with ``SIGKILL`` after its
first case and checks that the next one predicts only the others and writes the same label maps,
probabilities and ``volumes.csv`` as a prediction never interrupted; ``--no-resume`` predicts every
case.

A bad scan among many need not stop a prediction either: with ``--skip-bad-inputs`` each input
that fails a check (unreadable, blank, NaN, the wrong channel count, changed after its check) is
left out with a warning and listed with its error in ``skipped.csv``, and the others are predicted
exactly as without it (``tests/inference/test_inference_predict_skip.py``).

Safe checkpoint loading
-----------------------

Weights are read from ``safetensors`` files only, and metadata is JSON validated by pydantic
(:class:`~inpaintssl.checkpoint.CheckpointMeta`); nothing is unpickled. Foreign
``.pt``/``.pth``/``.bin``/``.ckpt`` files go through ``torch.load(weights_only=True)``, which
refuses pickled code: a checkpoint carrying a malicious payload is refused and the payload never
runs (``checkpoint-malicious-pickle``). A checkpoint whose files no longer match the hashes in
``COMPLETE.json`` is refused, whether it is given as its run folder, its checkpoint folder or its
``model.safetensors`` file (one with a ``COMPLETE.json`` beside it is read as its folder; one
without is foreign weights, taken as given), and weight transfer refuses every shape mismatch in
the parts it copies, naming each parameter and both shapes. A ``.pt``/``.pth`` file that
``torch.load`` cannot read (cut short, damaged) is reported as such, not as pickled code, and a
TorchScript archive (``export_model(format='torchscript')``) is refused naming what to pass
instead (its run folder or a safetensors export).

Non-finite losses and gradient clipping
---------------------------------------

The training loss is checked every 50 steps and at the end of each epoch (without a device
synchronisation per step), the validation loss after every epoch. A NaN or infinite loss stops
the run with :class:`~inpaintssl.training.loop.NonFiniteLossError` naming the phase, epoch and
step; the checkpoints already written are kept as they were. ``optim.grad_clip`` clips the global
gradient norm (``None``, the default, does not clip).

Determinism
-----------

Every run seeds Python, NumPy and torch from ``run.seed``, and each DataLoader worker from the
loader's seeded generator (the run's ``manifest.json`` lists the training workers' seeds). A run
keeps its workers from the first epoch to the last
(:class:`~inpaintssl.training.epoch_loader.EpochLoader`), which spares a worker start per epoch
where workers start by ``spawn`` (macOS) or ``forkserver`` (Linux from Python 3.14), and each
worker re-seeds itself at every pass over the data, from its seed and the pass's epoch
(:func:`~inpaintssl.training.epoch_loader.pass_worker_seed`; the first epoch's seeds are the ones
the manifest lists), so a dataset that draws at random draws new numbers in each epoch, and in
an epoch resumed the numbers the uninterrupted run drew there. A loader starts no more
workers than a pass has batches: one beyond would never get a batch, and the batches are the
same without it.
``data.worker_start_method`` (``fork``, ``forkserver`` or ``spawn``; the process's default when
null) chooses how they start, and the manifest records the one used: the weights are the same
bits whichever it is, and the same as with no workers
(``tests/training/test_training_worker_start_methods.py`` watches the workers start in ``/proc``).
``run.deterministic=true`` (``--deterministic``) also switches on
``torch.use_deterministic_algorithms`` and deterministic cuDNN (with a fixed cuBLAS workspace on
CUDA): two CPU runs then give bit-identical weights, which
``tests/reliability/test_reliability_resume.py`` checks.

Empty masks
-----------

A slice without foreground is normal (the first and last slices of a knee). A fine-tuning
*training set* without a single foreground pixel is not: it would train to a constant Dice loss
of 1 without any error, so fine-tuning refuses it (``data-empty-masks``). In evaluation an empty
mask is valid: a class empty in both prediction and reference scores Dice 1.0 (``empty_score``),
``mean_hu`` and ``mean_t2`` of an empty mask are NaN, and ``percent_error`` against a zero
reference is ``inf`` (NaN when both are zero).

The bad-input corpus
--------------------

Each case below builds a malformed input with the real file libraries (h5py, nibabel, pydicom,
Pillow, safetensors, torch, YAML) and calls the entry point a user would call. The tests
(``tests/reliability/test_reliability_bad_inputs.py``) check that each raises its error within
60 seconds with a message naming what is wrong and where, that a failed run leaves no checkpoint,
no results table and no temporary file behind, that its inputs are left unchanged, and that this
table still matches the library word for word. Paths are shown relative to the case's temporary
folder ``<tmp>``; messages longer than {max_message} characters are cut. Regenerate the table
with ``python tests/reliability/render_table.py``.

.. list-table::
   :header-rows: 1
   :widths: 14 8 26 10 42

   * - Case
     - Category
     - What is malformed
     - Error
     - Message
"""


def render_page(rows: list[str], *, rendered_with: str) -> str:
    """The whole page: the introduction, then the table ``rows`` in corpus order.

    ``rendered_with``: the :func:`library_versions` the messages were rendered with.
    """
    intro = _INTRO.replace("{max_message}", str(MAX_MESSAGE)).replace("{rendered_with}", rendered_with)
    return intro + "".join(rows)


def main() -> int:
    """Run every case and write :data:`DOC`; return the exit status."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="inpaintssl-bad-inputs-") as scratch:
        for case in CASES:
            folder = Path(scratch) / case.id
            folder.mkdir()
            message = message_of(run_case(case, folder))
            rows.append(table_row(case, normalise(message, folder)))
    atomic_write_text(DOC, render_page(rows, rendered_with=library_versions()))
    print(f"wrote {DOC} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
