"""Statistics of the paper's analyses (sec. 2.5.3, 2.6, 2.8): paired Wilcoxon tests, strategy
rankings, p-values adjusted for the tests a table makes, power-law fits and the labelled data a
target score needs.

Example:
    >>> from inpaintssl.stats import fit_power_law, wilcoxon_greater
    >>> wilcoxon_greater([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    0.125
    >>> round(fit_power_law([1.0, 2.0, 4.0, 8.0], [3.0, 5.0, 9.0, 17.0]).k, 6)
    1.0
"""

from inpaintssl.stats.labels_needed import (
    LabelsNeededInterval,
    labels_needed,
    labels_needed_interval,
    percentile_interval,
)
from inpaintssl.stats.multiplicity import holm_adjusted
from inpaintssl.stats.power_law import PowerLawFit, fit_power_law
from inpaintssl.stats.ranking import StrategyRank, pairwise_wilcoxon, rank_pairs, rank_strategies, top_in_all
from inpaintssl.stats.ties import tolerant_rankdata
from inpaintssl.stats.wilcoxon import paired_samples, wilcoxon_greater

__all__ = [
    "LabelsNeededInterval",
    "PowerLawFit",
    "StrategyRank",
    "fit_power_law",
    "holm_adjusted",
    "labels_needed",
    "labels_needed_interval",
    "paired_samples",
    "pairwise_wilcoxon",
    "percentile_interval",
    "rank_pairs",
    "rank_strategies",
    "tolerant_rankdata",
    "top_in_all",
    "wilcoxon_greater",
]
