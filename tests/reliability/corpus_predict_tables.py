"""Bad-input cases of predict's tables: a qDESS scan-parameter table, and the tables of its output.

Cases register themselves into :data:`corpus.CASES` through :func:`corpus._case`; corpus.py
imports this module at its end, so every name it defines above is available here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from corpus import Call, _case, _config, _image, _write_text

import inpaintssl as issl
from inpaintssl.data import DataError
from inpaintssl.inference import PredictionError


def _scan(folder: Path) -> Path:
    scan = folder / "scan.npy"
    np.save(scan, _image(3))
    return scan


@_case(
    "data-qdess-table-without-case-column",
    "data",
    DataError,
    r"qdess_parameters_csv .*spoilers\.csv has no case column: expected one named case or MTR_ID",
    r"found \['scan', 'gl_area', 'tg_us'\]",
)
def _qdess_table_without_case_column(folder: Path) -> Call:
    """A table of qDESS scan parameters per case (``--qdess-parameters-csv``) whose rows name their
    scan in a column called ``scan``, neither ``case`` nor SKM-TEA's ``MTR_ID``."""
    table = _write_text(folder / "spoilers.csv", "scan,gl_area,tg_us\nknee_01,3132,1792\n")
    scan = _scan(folder)
    return lambda: issl.predict(
        folder / "run", [scan], output=folder / "labels", t2=True, qdess_parameters_csv=table
    )


@_case(
    "data-predict-output-of-another-model",
    "data",
    PredictionError,
    r"output .*labels holds a volumes\.csv of the class volumes \['liver_ml'\], but this run predicts "
    r"\['disc_ml', 'square_ml'\]",
    r"predict into another output, or move it away first",
)
def _output_of_another_model(folder: Path) -> Call:
    """A predict into an output folder whose ``volumes.csv`` another model's predict wrote (other
    classes): its rows and the new ones would make no one table."""
    issl.finetune(_config(folder))
    (folder / "labels").mkdir()
    _write_text(
        folder / "labels" / "volumes.csv", "case,file,liver_ml,model\nct_01,ct_01.nii.gz,1520.5,liver\n"
    )
    scan = _scan(folder)
    return lambda: issl.predict(folder / "run", [scan], output=folder / "labels", device="cpu")
