"""Paper-ready plots of per-round results (matplotlib, imported only when a plot is drawn).

Every figure is written as PNG (300 dpi) and SVG by default, or any of PNG, SVG and PDF
(``formats``), sized for one column of a two-column paper (3.4 x 2.4 inches, 8 pt text). Outputs
are deterministic (no dates in the files).

* ``<metric>_by_round``: per-round AP50 / gIoU of each run with 95% bootstrap bands;
* ``error_accumulation``: gold-reference minus predicted-reference score per round, for each
  adapter run in both modes, with a 95% paired bootstrap band over dialogues: how much of the
  drop over rounds comes from wrong references;
* ``conditional_<run>``: accuracy of referring turns when the referenced turn was answered
  correctly vs. wrongly, with 95% bootstrap intervals over dialogues;
* ``failures_<run>``: per round, the share of turns hit, missed, failed on an unusable answer
  and failed on the server's side;
* ``population``: how many turns each round has (later rounds are small, their CIs wide).

Intervals drawn from the prediction logs resample whole dialogues (:func:`.compare.resample_ratios`,
the scheme of the run's own intervals), :data:`PLOT_RESAMPLES` times with seed 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import METRICS, RunResults, bench_label, cell_value
from .turns import load_run_bench, run_turn_scores

FIGSIZE = (3.4, 2.4)
ROUND_COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+")
_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'regiondial-bench[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "legend.fontsize": 6.5,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "regiondial",
            "svg.fonttype": "none",
            "lines.linewidth": 1.2,
            "lines.markersize": 3.5,
        }
    )
    return plt


def slug(text: str) -> str:
    """A file-name-safe version of a label.

    >>> slug("oracle (predicted) / v2")
    'oracle-predicted-v2'
    """
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:80] or "run"


FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
DEFAULT_FORMATS: tuple[str, ...] = ("png", "svg")
PLOT_RESAMPLES = 2000
"""Dialogue resamples behind the intervals a plot computes from prediction logs."""
# no timestamps or tool versions in the files, so a figure of the same runs is byte-identical
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
             "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


def save_figure(fig: Any, out_dir: str | Path, stem: str, formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write ``<stem>.<format>`` for each format (PNG at 300 dpi), close the figure, return the paths."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown plot format(s) {unknown}; choose from {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in dict.fromkeys(formats):
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, bbox_inches="tight", metadata=_METADATA[fmt], **({"dpi": 300} if fmt == "png" else {}))
        paths.append(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


MAX_RUNS_PER_FIGURE = 16
"""More curves than this in one 3.4-inch figure are unreadable: the plot refuses and says so."""
LEGEND_LABEL_CHARS = 28
LEGEND_ROW_IN = 0.13  # height of one legend row at 6.5 pt


def run_style(i: int) -> tuple[str, str]:
    """``(colour, marker)`` of the i-th curve: distinct pairs for the first 64 curves.

    >>> len({run_style(i) for i in range(MAX_RUNS_PER_FIGURE)}) == MAX_RUNS_PER_FIGURE
    True
    """
    return _COLORS[i % len(_COLORS)], _MARKERS[(i + i // len(_COLORS)) % len(_MARKERS)]


def _check_count(n: int, what: str) -> None:
    if n > MAX_RUNS_PER_FIGURE:
        raise ValueError(f"{n} {what} in one figure are unreadable; plot at most {MAX_RUNS_PER_FIGURE} "
                         "at a time (pass fewer RUN folders)")


def _short(label: str) -> str:
    """A label cut in the middle (its end often tells runs apart: "[folder]").

    >>> _short("noisy-oracle (predicted) [s10-predicted]")
    'noisy-oracle …s10-predicted]'
    """
    if len(label) <= LEGEND_LABEL_CHARS:
        return label
    head = (LEGEND_LABEL_CHARS - 1) // 2
    return label[:head] + "…" + label[-(LEGEND_LABEL_CHARS - 1 - head):]


def _figure(plt: Any) -> tuple[Any, Any]:
    # constrained layout keeps every artist, the legend included, inside the documented size
    return plt.subplots(figsize=FIGSIZE, layout="constrained")


def _bench_labels(labels: Sequence[str], results: Sequence[Any]) -> tuple[list[str], str | None]:
    """Legend labels and title that name the bench: one bench goes in the legend's title, several
    go after each run's label (so runs of different benches are never mistaken for comparable)."""
    benches = [bench_label(r) for r in results]
    if len(set(benches)) == 1:
        return [_short(label) for label in labels], f"bench: {benches[0]}"
    return [f"{_short(label)} [{bench}]" for label, bench in zip(labels, benches, strict=True)], None


def _legend(ax: Any, n: int, loc: str, title: str | None = None) -> None:
    # Up to three entries fit in the axes; beyond that the legend goes under the axes, in as many
    # columns as the figure's width holds, and the axes shrink instead of the figure growing.
    handles, labels = ax.get_legend_handles_labels()  # already short (_bench_labels)
    if n > 3:
        widest = max((len(label) for label in labels), default=1)
        entry_pt = 6.5 * 0.5 * widest + 24  # text at 6.5 pt plus the handle
        ncols = max(1, min(n, int(FIGSIZE[0] * 72 // entry_pt)))
        rows = -(-len(labels) // ncols)
        # the width stays the documented one; the figure grows by the legend's rows only
        ax.figure.set_size_inches(FIGSIZE[0], FIGSIZE[1] + LEGEND_ROW_IN * rows)
        ax.figure.legend(handles, labels, frameon=False, loc="outside lower center", ncols=ncols,
                         handlelength=1.5, columnspacing=1.0, title=title, title_fontsize=6.5)
    else:
        ax.legend(handles, labels, frameon=False, loc=loc, title=title, title_fontsize=6.5)


def _round_axis(ax: Any, columns: Sequence[str]) -> None:
    ax.set_xticks(range(1, len(columns) + 1))
    ax.set_xticklabels([c[1:] for c in columns])
    ax.set_xlabel("round")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)


def _columns_present(runs: Sequence[RunResults]) -> list[str]:
    cols = list(ROUND_COLUMNS[:7])
    if any(r.results.row("8+") is not None for r in runs):
        cols.append("R8+")
    return cols


def _ci_of(run: RunResults, metric: str, column: str) -> tuple[float, float] | None:
    from .report import column_row

    row = column_row(run.results, column)
    ci = None if row is None else {"ap50": row.ap50_ci, "giou": row.giou_ci}.get(metric)
    return None if ci is None else (ci.low, ci.high)


def plot_round_curves(runs: Sequence[RunResults], out_dir: str | Path, metric: str = "ap50",
                      formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Per-round ``metric`` of each run, with the bootstrap CI as a shaded band.

    Raises:
        ValueError: when no run has the metric (e.g. gIoU of runs without masks).
    """
    if not any(r.cell(metric, "R1") is not None for r in runs):
        raise ValueError(f"no run has {METRICS[metric]} scores (gIoU needs a run with masks)")
    _check_count(len(runs), "runs")
    plt = _pyplot()
    cols = _columns_present(runs)
    fig, ax = _figure(plt)
    labels, title = _bench_labels([run.label for run in runs], [run.results for run in runs])
    for i, run in enumerate(runs):
        xs, ys, lows, highs = [], [], [], []
        for x, col in enumerate(cols, 1):
            value = run.cell(metric, col)
            if value is None:
                continue
            ci = _ci_of(run, metric, col) or (value, value)
            xs.append(x)
            ys.append(value)
            lows.append(ci[0])
            highs.append(ci[1])
        if not xs:
            continue
        color, marker = run_style(i)
        ax.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)
        ax.plot(xs, ys, color=color, marker=marker, label=labels[i])
    _round_axis(ax, cols)
    ax.set_ylabel(f"{METRICS[metric]} (%)")
    ax.set_ylim(0, 102)
    _legend(ax, len(runs), loc="lower left", title=title)
    ax.set_title(f"{METRICS[metric]} by round (bands: 95% bootstrap CI)")
    return save_figure(fig, out_dir, f"{metric}_by_round", formats)


def reference_pairs(runs: Sequence[RunResults]) -> list[tuple[str, RunResults, RunResults]]:
    """Pairs of runs of the same adapter and settings on the same bench, one with predicted and
    one with gold references: ``(label, predicted_run, gold_run)``."""

    def key(run: RunResults) -> tuple[str, str, str]:
        prov = run.results.provenance
        return (prov.bench_hash, prov.adapter, repr(sorted(prov.adapter_config.items())))

    gold = {key(r): r for r in runs if r.reference_mode == "gold"}
    pairs = []
    for run in runs:
        if run.reference_mode in ("predicted", "upstream") and key(run) in gold:
            label = run.label.replace(f" ({run.reference_mode})", "")
            if run.reference_mode == "upstream":
                label += " (upstream)"
            pairs.append((label, run, gold[key(run)]))
    return pairs


def error_gaps(
    predicted: RunResults,
    gold: RunResults,
    columns: Sequence[str],
    metric: str = "ap50",
    scores: TurnScores | None = None,
) -> dict[str, tuple[float, float, float]]:
    """``{column: (gap, low, high)}``: gold-reference minus predicted-reference score, in points.

    The interval is a 95% paired bootstrap over dialogues when both prediction logs can be read
    (the two runs answered the same dialogues, so one draw scores both); otherwise it is built
    from the two runs' own intervals as if they were independent (wider), and a column without
    intervals gets none (``low == high == gap``).
    """
    scores = scores or TurnScores()
    try:
        paired = scores.paired(gold, predicted)
    except (FileNotFoundError, ValueError, LookupError):
        paired = None
    out: dict[str, tuple[float, float, float]] = {}
    if paired is not None and (metric != "giou" or paired.row(metric, "Avg") is not None):
        for column in columns:
            row = paired.row(metric, column)
            if row is not None:
                out[column] = (row.diff, row.low, row.high)
        return out
    for column in columns:
        a, b = gold.cell(metric, column), predicted.cell(metric, column)
        if a is None or b is None:
            continue
        ci_a, ci_b = _ci_of(gold, metric, column), _ci_of(predicted, metric, column)
        if ci_a is None or ci_b is None:
            out[column] = (a - b, a - b, a - b)
            continue
        half = math.hypot(ci_a[1] - ci_a[0], ci_b[1] - ci_b[0]) / 2  # 1.96 x the difference's se
        out[column] = (a - b, a - b - half, a - b + half)
    return out


def plot_error_accumulation(
    runs: Sequence[RunResults], out_dir: str | Path, metric: str = "ap50",
    formats: Sequence[str] = DEFAULT_FORMATS, scores: TurnScores | None = None,
) -> list[Path]:
    """Per-round gap ``gold-reference score - predicted-reference score`` for each pair of runs,
    with its 95% interval as a band (:func:`error_gaps`).

    A gap that grows with the round is error accumulation: wrong answers of earlier turns,
    passed on as references, make later turns fail.

    Raises:
        ValueError: when no adapter was run in both a gold and a predicted reference mode.
    """
    pairs = reference_pairs(runs)
    if not pairs:
        raise ValueError(
            "error accumulation needs the same adapter run twice: --reference-mode predicted and "
            "--reference-mode gold (none of the given runs form such a pair)"
        )
    _check_count(len(pairs), "run pairs")
    plt = _pyplot()
    cols = _columns_present([r for _, p, g in pairs for r in (p, g)])
    fig, ax = _figure(plt)
    labels, title = _bench_labels([label for label, _, _ in pairs], [p.results for _, p, _ in pairs])
    for i, (_, predicted, gold) in enumerate(pairs):
        gaps = error_gaps(predicted, gold, cols, metric, scores)
        xs = [x for x, col in enumerate(cols, 1) if col in gaps]
        values = [gaps[col] for col in cols if col in gaps]
        color, marker = run_style(i)
        ax.fill_between(xs, [v[1] for v in values], [v[2] for v in values], color=color, alpha=0.15, linewidth=0)
        ax.plot(xs, [v[0] for v in values], color=color, marker=marker, label=labels[i])
    ax.axhline(0, color="black", linewidth=0.6)
    _round_axis(ax, cols)
    ax.set_ylabel(f"{METRICS[metric]} gap (points)")
    ax.set_title("Error accumulation: gold minus predicted references\n(bands: 95% paired bootstrap CI)")
    _legend(ax, len(pairs), loc="upper left", title=title)
    return save_figure(fig, out_dir, "error_accumulation", formats)


def conditional_accuracy(scores: Sequence[Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """Hits and counts of referring turns, split by whether all referenced turns were hits.

    Args:
        scores: :class:`regiondial_bench.metrics.TurnScore` of one run.

    Returns:
        ``{column: {"ref correct": (hits, n), "ref wrong": (hits, n)}}`` for columns R2..R7,
        R8+ and Avg (only rounds with referring turns appear).
    """
    hit = {(s.dialogue_id, s.turn): s.hit for s in scores}
    out: dict[str, dict[str, list[int]]] = {}
    for s in scores:
        refs = [t for t in s.reference_turns if t < s.turn and (s.dialogue_id, t) in hit]
        if not refs:
            continue
        group = "ref correct" if all(hit[(s.dialogue_id, t)] for t in refs) else "ref wrong"
        for col in (f"R{s.round}" if s.round < 8 else "R8+", "Avg"):
            cell = out.setdefault(col, {"ref correct": [0, 0], "ref wrong": [0, 0]})[group]
            cell[0] += int(s.hit)
            cell[1] += 1
    order = [c for c in (*ROUND_COLUMNS, "Avg") if c in out]
    return {c: {g: (v[0], v[1]) for g, v in out[c].items()} for c in order}


def _column_of(round_: int) -> str:
    return f"R{round_}" if round_ < 8 else "R8+"


def conditional_intervals(scores: Sequence[Any], *, n_bootstrap: int = PLOT_RESAMPLES, seed: int = 0
                          ) -> dict[str, dict[str, tuple[float, float]]]:
    """95% bootstrap intervals over dialogues (percent) of the cells of :func:`conditional_accuracy`."""
    import numpy as np

    from .compare import resample_ratios

    hit = {(s.dialogue_id, s.turn): s.hit for s in scores}
    ids: dict[str, int] = {}
    dialogue, hits, cells = [], [], []
    for s in scores:
        refs = [t for t in s.reference_turns if t < s.turn and (s.dialogue_id, t) in hit]
        if refs:
            dialogue.append(ids.setdefault(s.dialogue_id, len(ids)))
            hits.append(float(s.hit))
            group = "ref correct" if all(hit[(s.dialogue_id, t)] for t in refs) else "ref wrong"
            cells.append((_column_of(s.round), group))
    if not dialogue:
        return {}
    cells_array = np.asarray([f"{c}|{g}" for c, g in cells])
    names = sorted(set(cells_array.tolist()))
    selections = [np.flatnonzero(cells_array == name) for name in names]
    names += [f"Avg|{g}" for g in ("ref correct", "ref wrong")]
    selections += [np.flatnonzero(np.asarray([g == group for _, g in cells])) for group in ("ref correct", "ref wrong")]
    kept = [(n, sel) for n, sel in zip(names, selections, strict=True) if len(sel)]
    _, samples = resample_ratios(np.asarray(dialogue), np.asarray(hits), [sel for _, sel in kept],
                                 n_bootstrap=n_bootstrap, seed=seed)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for j, (name, _) in enumerate(kept):
        column, group = name.split("|")
        values = samples[:, j][np.isfinite(samples[:, j])]
        low, high = np.percentile(values, [2.5, 97.5]) * 100 if values.size else (np.nan, np.nan)
        out.setdefault(column, {})[group] = (float(low), float(high))
    return out


def plot_conditional_accuracy(run: RunResults, scores: Sequence[Any], out_dir: str | Path,
                              formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Bars of AP50 on referring turns whose referenced turn was right vs. wrong, per round, with
    95% bootstrap intervals over dialogues.

    Raises:
        ValueError: when the run has no referring turns.
    """
    table = conditional_accuracy(scores)
    if not table:
        raise ValueError(f"{run.label}: no turn refers to an earlier turn; nothing to condition on")
    intervals = conditional_intervals(scores)
    plt = _pyplot()
    fig, ax = _figure(plt)
    cols = list(table)
    from matplotlib.patches import Patch

    # side by side, "n=123" labels of more than 4 columns would overlap: stand them upright
    upright = len(cols) > 4
    handles = []
    for j, (group, color) in enumerate((("ref correct", _COLORS[2]), ("ref wrong", _COLORS[1]))):
        xs, ys, ns, lows, highs = [], [], [], [], []
        for x, col in enumerate(cols, 1):
            hits, n = table[col][group]
            if n:
                xs.append(x + (j - 0.5) * 0.38)
                ys.append(100.0 * hits / n)
                ns.append(n)
                low, high = intervals.get(col, {}).get(group, (ys[-1], ys[-1]))
                lows.append(min(low, ys[-1]))
                highs.append(max(high, ys[-1]))
        ax.bar(xs, ys, width=0.38, color=color)
        ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows, strict=True)],
                                  [hi - y for y, hi in zip(ys, highs, strict=True)]],
                    fmt="none", color="#333333", ecolor="#333333", elinewidth=0.6, capsize=1.2, capthick=0.6)
        # the turn counts sit above the interval, so neither hides the other
        for x, top, n in zip(xs, highs, ns, strict=True):
            ax.text(x, top + 1.5, f"{n}" if upright else f"n={n}", fontsize=5, ha="center", va="bottom",
                    rotation=90 if upright else 0)
        # An explicit handle: an empty group (a run that is never wrong) would otherwise get a
        # legend entry in matplotlib's default colour.
        handles.append(Patch(color=color, label=f"referenced turn {group.split()[1]}"))
    ax.set_xticks(range(1, len(cols) + 1))
    ax.set_xticklabels([c[1:] if c != "Avg" else "all" for c in cols])
    ax.set_xlabel("round (labels: turns; bars: 95% CI)" if upright else "round (bars: 95% CI)")
    ax.set_ylabel("AP50 (%)")
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.legend(handles=handles, frameon=False, loc="upper center", ncols=2)
    ax.set_title(f"{_short(run.label)}\naccuracy given the referenced turn")
    return save_figure(fig, out_dir, f"conditional_{slug(run.label)}", formats)


OUTCOMES: tuple[tuple[str, str], ...] = (
    ("hit", _COLORS[2]),
    ("missed (IoU <= 0.5)", _COLORS[4]),
    ("failed: unusable answer", _COLORS[1]),
    ("failed: server or connection", _COLORS[6]),
)


def failure_breakdown(scores: Sequence[Any]) -> dict[str, dict[str, int]]:
    """``{column: {outcome: turns}}`` per round column (R1..R7, R8+) and ``Avg``: each turn is
    a hit, a miss, or a failure of the answer (unparsable, no region) or of the infrastructure
    (recorded ``failure_kind: infra``)."""
    out: dict[str, dict[str, int]] = {}
    names = [name for name, _ in OUTCOMES]
    for s in scores:
        if s.failure_kind == "infra":
            outcome = names[3]
        elif s.error is not None:
            outcome = names[2]
        else:
            outcome = names[0] if s.hit else names[1]
        for column in (_column_of(s.round), "Avg"):
            cell = out.setdefault(column, dict.fromkeys(names, 0))
            cell[outcome] += 1
    return {c: out[c] for c in (*ROUND_COLUMNS, "Avg") if c in out}


def plot_failure_breakdown(run: RunResults, scores: Sequence[Any], out_dir: str | Path,
                           formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Stacked bars per round: the share of turns hit, missed, and failed (answer or server).

    Raises:
        ValueError: when the run answered no turn.
    """
    table = failure_breakdown(scores)
    if not table:
        raise ValueError(f"{run.label}: no answered turn to break down")
    plt = _pyplot()
    fig, ax = _figure(plt)
    cols = list(table)
    xs = list(range(1, len(cols) + 1))
    bottom = [0.0] * len(cols)
    for name, color in OUTCOMES:
        shares = [100.0 * table[c][name] / sum(table[c].values()) for c in cols]
        ax.bar(xs, shares, width=0.7, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, shares, strict=True)]
    ax.set_xticks(xs)
    ax.set_xticklabels([c[1:] if c != "Avg" else "all" for c in cols])
    ax.set_xlabel("round")
    ax.set_ylabel("turns (%)")
    ax.set_ylim(0, 100)
    # four entries: under the axes in two columns; the figure grows by the legend's rows only
    fig.set_size_inches(FIGSIZE[0], FIGSIZE[1] + 2 * LEGEND_ROW_IN)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, loc="outside lower center", ncols=2)
    ax.set_title(f"{_short(run.label)}\nturn outcomes by round")
    return save_figure(fig, out_dir, f"failures_{slug(run.label)}", formats)


def plot_population(runs: Sequence[RunResults], out_dir: str | Path,
                    formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Turns per round index (one bar group per distinct bench among the runs)."""
    plt = _pyplot()
    benches: dict[str, RunResults] = {}
    for run in runs:
        benches.setdefault(run.results.provenance.bench_hash, run)
    rounds = sorted({int(r.round) for run in benches.values() for r in run.results.rounds})
    fig, ax = _figure(plt)
    width = 0.8 / len(benches)
    for i, run in enumerate(benches.values()):
        xs = [r + (i - (len(benches) - 1) / 2) * width for r in rounds]
        ns = [int(cell_value(run.results, "n", f"R{r}") or 0) for r in rounds]
        bars = ax.bar(
            xs, ns, width=width, color=_COLORS[i % len(_COLORS)], label=run.results.provenance.bench_name
        )
        # more than 8 labels side by side in 3.4 inches overlap: stand them upright; bars narrower
        # than an upright label's line (about 6 pt) get none (the y axis still reads the count)
        bar_pt = FIGSIZE[0] * 0.85 * 72 / (max(rounds) - min(rounds) + 2) * width
        if bar_pt >= 6:
            ax.bar_label(bars, fontsize=5, padding=1, rotation=90 if len(rounds) * len(benches) > 8 else 0)
    ax.set_xticks(rounds)
    ax.margins(y=0.15)
    ax.set_xlabel("round")
    ax.set_ylabel("turns")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_title("Turns per round")
    if len(benches) > 1:
        ax.legend(frameon=False)
    return save_figure(fig, out_dir, "population", formats)


class TurnScores:
    """Per-turn scores of runs for the plots, each bench loaded once and each log read once."""

    def __init__(self) -> None:
        self._benches: dict[str, Any] = {}
        self._scores: dict[int, list[Any]] = {}
        self._runs: list[RunResults] = []  # keeps the runs alive, so their ids stay theirs

    def of(self, run: RunResults) -> list[Any]:
        """The run's per-turn scores (FileNotFoundError without a prediction log)."""
        if id(run) not in self._scores:
            bench_hash = run.results.provenance.bench_hash
            if bench_hash not in self._benches:
                self._benches[bench_hash] = load_run_bench(run)
            self._scores[id(run)] = run_turn_scores(run, self._benches[bench_hash])
            self._runs.append(run)
        return self._scores[id(run)]

    def paired(self, a: RunResults, b: RunResults) -> Any:
        """The paired comparison ``a - b`` (:func:`.compare.compare_scores`) of two runs' scores."""
        from .compare import compare_scores

        return compare_scores(self.of(a), self.of(b), n_bootstrap=PLOT_RESAMPLES, seed=0)


def plot_all(runs: Sequence[RunResults], out_dir: str | Path, formats: Sequence[str] = DEFAULT_FORMATS
             ) -> tuple[list[Path], list[str]]:
    """Every plot the runs allow. Returns ``(written paths, reasons for plots that were skipped)``."""
    written: list[Path] = []
    skipped: list[str] = []
    scores = TurnScores()
    for metric in ("ap50", "giou"):
        try:
            written += plot_round_curves(runs, out_dir, metric, formats)
        except ValueError as exc:
            skipped.append(f"{metric}_by_round: {exc}")
    try:
        written += plot_error_accumulation(runs, out_dir, formats=formats, scores=scores)
    except ValueError as exc:
        skipped.append(f"error_accumulation: {exc}")
    for run in runs:
        try:
            run_scores = scores.of(run)
        except (ValueError, FileNotFoundError, LookupError) as exc:
            skipped.append(f"conditional and failures ({run.label}): {exc}")
            continue
        for name, plot in (("conditional", plot_conditional_accuracy), ("failures", plot_failure_breakdown)):
            try:
                written += plot(run, run_scores, out_dir, formats)
            except ValueError as exc:
                skipped.append(f"{name} ({run.label}): {exc}")
    written += plot_population(runs, out_dir, formats)
    return written, skipped
