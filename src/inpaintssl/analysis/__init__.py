"""Tables, figures and reports from a study's results (paper sec. 2.5-2.8); no training, no data.

Everything here works on one row type, :class:`Table` (the long results of a study, a paper table,
or a training run's evaluation rows), and depends on :mod:`inpaintssl.metrics` and
:mod:`inpaintssl.stats` only: :mod:`~inpaintssl.analysis.summaries` computes the numbers,
:mod:`~inpaintssl.analysis.paper_tables` the paper's tables, :mod:`~inpaintssl.analysis.figures`
its figures, :mod:`~inpaintssl.analysis.clinical` the clinical-metric agreement and
:mod:`~inpaintssl.analysis.pages` renders them as Markdown and HTML. Running studies is
:mod:`inpaintssl.studies`.

Example:
    >>> from inpaintssl.analysis import Table, label_fraction_summary
    >>> rows = [{"arm": a, "strategy": a, "label_fraction": 0.1, "subset_seed": 0, "level": "image",
    ...          "volume_id": "v", "slice_index": 0, "class_name": "", "metric": "dice_mean", "value": v}
    ...         for a, v in [("ssl", 0.8), ("supervised", 0.7)]]
    >>> label_fraction_summary(Table(rows), class_names=[]).cells("pairs")
    [1]
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from inpaintssl._lazy import lazy_exports

if TYPE_CHECKING:
    from inpaintssl.analysis.clinical import agreement_table, per_image_comparison_table
    from inpaintssl.analysis.figures import (
        FigureFiles,
        plot_dice_vs_label_fraction,
        plot_dice_vs_pretraining_data,
        plot_percent_error_bars,
        plot_ssl_vs_supervised,
        plot_transfer_boxplots,
    )
    from inpaintssl.analysis.pages import ReportParts, write_pages
    from inpaintssl.analysis.paper_tables import (
        dice_table,
        labels_needed_table,
        power_law_table,
        table2_l2_norm,
        table3_ranking,
    )
    from inpaintssl.analysis.summaries import label_fraction_summary, paired_scores
    from inpaintssl.analysis.table import Table, format_value

# Submodules load on first use: reading a table does not import matplotlib.
_EXPORTS = MappingProxyType(
    {
        "FigureFiles": "figures",
        "ReportParts": "pages",
        "Table": "table",
        "agreement_table": "clinical",
        "dice_table": "paper_tables",
        "format_value": "table",
        "label_fraction_summary": "summaries",
        "labels_needed_table": "paper_tables",
        "paired_scores": "summaries",
        "per_image_comparison_table": "clinical",
        "plot_dice_vs_label_fraction": "figures",
        "plot_dice_vs_pretraining_data": "figures",
        "plot_percent_error_bars": "figures",
        "plot_ssl_vs_supervised": "figures",
        "plot_transfer_boxplots": "figures",
        "power_law_table": "paper_tables",
        "table2_l2_norm": "paper_tables",
        "table3_ranking": "paper_tables",
        "write_pages": "pages",
    }
)
__all__ = [
    "FigureFiles",
    "ReportParts",
    "Table",
    "agreement_table",
    "dice_table",
    "format_value",
    "label_fraction_summary",
    "labels_needed_table",
    "paired_scores",
    "per_image_comparison_table",
    "plot_dice_vs_label_fraction",
    "plot_dice_vs_pretraining_data",
    "plot_percent_error_bars",
    "plot_ssl_vs_supervised",
    "plot_transfer_boxplots",
    "power_law_table",
    "table2_l2_norm",
    "table3_ranking",
    "write_pages",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
