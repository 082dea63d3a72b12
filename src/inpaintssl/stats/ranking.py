"""Rank pretraining strategies by how significantly they beat supervised learning (sec. 2.5.3).

The paper's procedure (sec. 2.5.3, Table 3): for each dataset, compute the class-averaged Dice of
every test image for the fully-supervised baseline and for each SSL strategy (pretext task x patch
size x sampler), fine-tuned on 50%, 25%, 10% and 5% of the labels. Pool the pairs
(same image, same label fraction) of all four fractions, test "strategy > baseline" with a
one-sided paired Wilcoxon signed-rank test, and sort the strategies by p-value, smallest first.
The optimal strategy is the one in the top three for every dataset (context restoration, 32x32,
Poisson-disc in the paper).

Scores equal up to float round-off (the same Dice summed in another order, or in float32) must not
decide an order, so p-values and mean differences are compared within a tolerance
(:mod:`inpaintssl.stats.ties`), and strategies tied on both share an average rank
(:attr:`StrategyRank.tied_rank`), as :func:`scipy.stats.rankdata` ranks exact ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inpaintssl.stats.ties import ROUND_OFF_ATOL, ROUND_OFF_RTOL, round_off_tolerance, tie_groups
from inpaintssl.stats.wilcoxon import paired_samples, wilcoxon_greater

__all__ = ["StrategyRank", "pairwise_wilcoxon", "rank_pairs", "rank_strategies", "top_in_all"]


@dataclass(frozen=True)
class StrategyRank:
    """One row of a Table-3-style ranking.

    Attributes:
        rank: 1 for the smallest p-value.
        name: Strategy name.
        p_value: One-sided paired Wilcoxon p-value of "strategy > baseline".
        n_pairs: Number of (image, label fraction) pairs tested.
        mean_difference: Mean of strategy minus baseline score over the pairs.
        tied_rank: Average of the ranks of the strategies tied with this one (equal p-value and
            mean difference up to round-off), e.g. 1.5 for two tied at the top; equal to ``rank``
            when untied. ``None`` for a row built by hand without it (then ``rank`` stands in).
    """

    rank: int
    name: str
    p_value: float
    n_pairs: int
    mean_difference: float
    tied_rank: float | None = None

    @property
    def position(self) -> float:
        """:attr:`tied_rank` when known, else :attr:`rank`: the rank to compare strategies by.

        Example:
            >>> StrategyRank(2, "a", 0.01, 10, 0.1, tied_rank=1.5).position
            1.5
        """
        return float(self.rank) if self.tied_rank is None else self.tied_rank


def rank_strategies(
    scores: Mapping[str, npt.ArrayLike],
    baseline: npt.ArrayLike,
    *,
    rtol: float = ROUND_OFF_RTOL,
    atol: float = ROUND_OFF_ATOL,
) -> list[StrategyRank]:
    """Sort strategies by the p-value of beating the baseline, smallest first (sec. 2.5.3, Table 3).

    Each strategy's scores are paired element-wise with the baseline's, so pass arrays of one
    shape, e.g. ``(F, N)`` for F label fractions x N test images (the paper pools F = 4 fractions,
    50/25/10/5%). Equal p-values (common when every strategy wins every pair) are ordered by the
    larger mean difference, then by name, so the ranking is deterministic.

    "Equal" is up to float round-off, so summation order cannot reorder strategies: p-values
    within a factor ``1 + rtol`` of each other are equal (they span many decades, so the
    comparison is relative), and mean differences within ``rtol * scale + atol``, ``scale`` the
    largest ``|score|`` of any strategy or baseline. Strategies equal on both are listed by name
    but share their average rank in :attr:`StrategyRank.tied_rank`. The Wilcoxon tests themselves
    treat round-off the same way (:func:`~inpaintssl.stats.wilcoxon_greater`).

    Args:
        scores: Strategy name -> per-image scores (higher is better, e.g. class-averaged Dice).
        baseline: Paired scores of the fully-supervised baseline.
        rtol: Relative round-off tolerance (default
            :data:`~inpaintssl.stats.ties.ROUND_OFF_RTOL`); ``rtol=0, atol=0`` compares exactly.
        atol: Absolute round-off tolerance of the scores (default
            :data:`~inpaintssl.stats.ties.ROUND_OFF_ATOL`).

    Returns:
        One :class:`StrategyRank` per strategy, best first.

    Raises:
        ValueError: If ``scores`` is empty or a strategy's scores are not paired with ``baseline``.

    Example:
        >>> base = [0.70, 0.72, 0.68, 0.75, 0.71]
        >>> ranking = rank_strategies(
        ...     {"prediction": [0.69, 0.73, 0.69, 0.74, 0.72],
        ...      "restoration": [0.75, 0.76, 0.74, 0.79, 0.77]}, base)
        >>> [(r.rank, r.name) for r in ranking]
        [(1, 'restoration'), (2, 'prediction')]
        >>> tied = rank_strategies({"b": [0.1 + 0.2, 0.5], "a": [0.3, 0.5]}, [0.2, 0.4])
        >>> [(r.rank, r.name, r.tied_rank) for r in tied]  # equal but for round-off: a tie
        [(1, 'a', 1.5), (2, 'b', 1.5)]
    """
    if not scores:
        raise ValueError("scores must map at least one strategy name to its scores; found none")
    return rank_pairs({name: (values, baseline) for name, values in scores.items()}, rtol=rtol, atol=atol)


def rank_pairs(
    pairs: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    rtol: float = ROUND_OFF_RTOL,
    atol: float = ROUND_OFF_ATOL,
) -> list[StrategyRank]:
    """:func:`rank_strategies` with each strategy paired with its own baseline scores.

    For strategies measured on different items (one finished fewer runs): each is tested on the
    items it shares with the baseline, so one incomplete strategy does not shrink the others'
    samples. Read a p-value beside its ``n_pairs``.

    Args:
        pairs: Strategy name -> ``(strategy scores, baseline scores on the same items)``.
        rtol: Relative round-off tolerance, as in :func:`rank_strategies`.
        atol: Absolute round-off tolerance, as in :func:`rank_strategies`.

    Returns:
        One :class:`StrategyRank` per strategy, best first (ties as in :func:`rank_strategies`).

    Raises:
        ValueError: If ``pairs`` is empty or a pair's arrays differ in shape.

    Example:
        >>> ranking = rank_pairs({"a": ([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]), "b": ([0.9], [0.5])})
        >>> [(r.name, r.n_pairs, r.p_value) for r in ranking]
        [('a', 3, 0.125), ('b', 1, 0.5)]
    """
    if not pairs:
        raise ValueError("pairs must map at least one strategy name to its scores; found none")
    rows: list[tuple[float, float, str, int]] = []
    samples: list[npt.NDArray[np.float64]] = []
    for name, (values, baseline) in pairs.items():
        x, y = paired_samples(values, baseline, names=(f"scores[{name!r}]", f"baseline[{name!r}]"))
        rows.append((wilcoxon_greater(x, y, rtol=rtol, atol=atol), float(np.mean(x - y)), name, int(x.size)))
        samples += [x, y]
    difference_tol = round_off_tolerance(*samples, rtol=rtol, atol=atol)
    p_values = np.array([row[0] for row in rows])
    # p-values span many decades: compare them relatively, as log p within rtol (ratio ~ 1 + rtol).
    with np.errstate(divide="ignore"):
        p_group = tie_groups(np.log(p_values), tol=rtol)
    # Within a p-value group, the larger mean difference first: group the negated differences.
    # Grouping per p-value group keeps a chain of near-equal differences from linking across groups.
    difference_group = np.zeros(len(rows), dtype=np.int64)
    for group in np.unique(p_group):
        members = np.flatnonzero(p_group == group)
        difference_group[members] = tie_groups(-np.array([rows[i][1] for i in members]), tol=difference_tol)
    order = sorted(range(len(rows)), key=lambda i: (p_group[i], difference_group[i], rows[i][2]))
    ranking: list[StrategyRank] = []
    start = 0
    while start < len(order):
        stop = start
        key = (p_group[order[start]], difference_group[order[start]])
        while stop < len(order) and (p_group[order[stop]], difference_group[order[stop]]) == key:
            stop += 1
        tied_rank = (start + 1 + stop) / 2.0  # average of the ranks start+1 .. stop
        for position in range(start, stop):
            p, diff, name, n = rows[order[position]]
            ranking.append(
                StrategyRank(
                    position + 1, name, p_value=p, n_pairs=n, mean_difference=diff, tied_rank=tied_rank
                )
            )
        start = stop
    return ranking


def top_in_all(rankings: Mapping[str, Sequence[StrategyRank]], *, top: int = 3) -> list[str]:
    """Strategies ranked in the top ``top`` of every dataset's ranking (sec. 2.5.3 heuristic).

    A strategy's place is its :attr:`StrategyRank.position`: strategies tied (up to round-off)
    share their average rank, so a tie across the cut-off keeps all of them or none, rather than
    letting their names decide.

    Args:
        rankings: Dataset name -> ranking from :func:`rank_strategies`.
        top: How many leading ranks count (3 in the paper).

    Returns:
        The qualifying strategy names, ordered by their worst rank over datasets, then by their
        rank sum, then by name; empty when no strategy qualifies.

    Raises:
        ValueError: If ``rankings`` is empty or ``top < 1``.

    Example:
        >>> mri = [StrategyRank(r, name, 0.01, 10, 0.1) for r, name in enumerate("abcd", start=1)]
        >>> ct = [StrategyRank(r, name, 0.01, 10, 0.1) for r, name in enumerate("cdba", start=1)]
        >>> top_in_all({"mri": mri, "ct": ct}, top=3)  # b is 2nd and 3rd, c is 3rd and 1st
        ['c', 'b']
    """
    if not rankings:
        raise ValueError("rankings must hold at least one dataset's ranking; found none")
    if top < 1:
        raise ValueError(f"top must be >= 1; found {top}")
    positions: dict[str, list[float]] = {}
    for ranking in rankings.values():
        for row in ranking:
            positions.setdefault(row.name, []).append(row.position)
    qualifying = [
        name for name, ranks in positions.items() if len(ranks) == len(rankings) and max(ranks) <= top
    ]
    return sorted(qualifying, key=lambda name: (max(positions[name]), sum(positions[name]), name))


def pairwise_wilcoxon(
    scores: Mapping[str, npt.ArrayLike], *, rtol: float = ROUND_OFF_RTOL, atol: float = ROUND_OFF_ATOL
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """One-sided paired Wilcoxon p-values between every two strategies.

    Not part of the paper's ranking (which compares each strategy with the supervised baseline
    only), but useful to see whether two top-ranked strategies differ at all.

    Args:
        scores: Strategy name -> paired per-image scores, all of one shape.
        rtol: Relative round-off tolerance of :func:`~inpaintssl.stats.wilcoxon_greater`.
        atol: Absolute round-off tolerance of :func:`~inpaintssl.stats.wilcoxon_greater`.

    Returns:
        ``(names, p)`` with names sorted and ``p[i, j]`` the p-value of "``names[i]`` > ``names[j]``";
        the diagonal is NaN.

    Example:
        >>> names, p = pairwise_wilcoxon({"a": [2.0, 3.0, 4.0], "b": [1.0, 2.0, 3.0]})
        >>> names, float(p[0, 1]), float(p[1, 0])
        (['a', 'b'], 0.125, 1.0)
    """
    names = sorted(scores)
    p = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                x, y = paired_samples(scores[a], scores[b], names=(f"scores[{a!r}]", f"scores[{b!r}]"))
                p[i, j] = wilcoxon_greater(x, y, rtol=rtol, atol=atol)
    return names, p
