"""Minimum detectable effects: how large a difference a run of this size can show at all.

Late rounds hold a few hundred turns, so a difference of several points there may be noise. The
minimum detectable effect (MDE) is the smallest true difference that a two-sided test at level
``alpha`` detects with probability ``power``, given the standard error ``se`` of the difference:

    MDE = (z(1 - alpha/2) + z(power)) * se          (2.80 * se at alpha 0.05, power 0.8)

* ``compare`` (paired, same bench): ``se`` is the standard deviation of the paired bootstrap
  differences over dialogues, so the pairing and the dependence of a dialogue's turns are in it.
* ``report`` (one run): ``se`` of one score is read off its 95% dialogue-bootstrap interval,
  ``(high - low) / (2 * 1.96)``, and the difference of two independent runs of the same size has
  ``sqrt(2)`` times that. A paired comparison on the same bench usually has a smaller ``se`` (its
  two runs err on the same dialogues), so the report's figure is an upper bound of what
  ``compare`` can detect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from .report import METRICS, RunResults, Table, TableRow, bench_label, column_row

ALPHA = 0.05
POWER = 0.80


def mde_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """``z(1 - alpha/2) + z(power)``.

    >>> round(mde_factor(), 3)
    2.802
    """
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1); got {alpha}, {power}")
    normal = NormalDist()
    return normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)


def minimum_detectable_effect(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The MDE of a difference with standard error ``se`` (same unit as ``se``).

    >>> round(minimum_detectable_effect(1.0), 2)
    2.8
    """
    return mde_factor(alpha, power) * se


def two_run_mde(low: float, high: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The MDE between two independent runs of the size of one whose score has 95% interval
    ``[low, high]``.

    >>> round(two_run_mde(80.0, 84.0), 2)   # se 1.02 points, difference se 1.44
    4.04
    """
    se = (high - low) / (2 * NormalDist().inv_cdf(0.975))
    return minimum_detectable_effect(math.sqrt(2) * se, alpha, power)


def run_mde(run: RunResults, metric: str, column: str) -> float | None:
    """:func:`two_run_mde` of one cell of a run, or None without a bootstrap interval."""
    row = column_row(run.results, column)
    ci = None if row is None else {"ap50": row.ap50_ci, "giou": row.giou_ci}.get(metric)
    if ci is None or not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None
    return round(two_run_mde(ci.low, ci.high), 4)


def mde_table(runs: Sequence[RunResults], metric: str = "ap50", columns: Sequence[str] | None = None) -> Table:
    """Per-round MDE of each run (points): the table ``regiondial report --mde`` adds."""
    from .report import DEFAULT_COLUMNS

    if metric not in ("ap50", "giou"):
        raise ValueError(f"the MDE is computed for ap50 and giou (from their intervals), not {metric!r}")
    cols = list(columns or DEFAULT_COLUMNS)
    rows = [TableRow(run.label, [run_mde(run, metric, c) for c in cols], "run", bench=bench_label(run.results))
            for run in runs]
    notes = [f"MDE: the smallest true difference (points) between two independent runs of this size that a "
             f"two-sided test at alpha {ALPHA} detects with {POWER:.0%} power: {mde_factor():.2f} x sqrt(2) x the "
             "score's standard error, read off its 95% dialogue-bootstrap interval. A paired comparison on "
             "the same bench (regiondial compare) usually detects less."]
    if any(v is None for row in rows for v in row.values):
        notes.append("'–': no bootstrap interval (scored with --bootstrap 0, or no such round or metric).")
    return Table(f"{METRICS[metric]} minimum detectable effect by round (points)", cols, rows, notes)
