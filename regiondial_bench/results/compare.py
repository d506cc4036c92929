"""Paired comparison of two runs on the same bench: is run A better than run B, round by round?

Both runs answered the same dialogues, so the comparison is *paired*: one bootstrap resample draws
D dialogues with replacement and scores **both** runs on that same draw; the statistic is the
difference ``A - B`` of AP50 (and gIoU when both runs have masks) per round column (R1..R7, R8+,
Avg). Turns of one dialogue stay together, as in the per-run intervals of :mod:`metrics`.

* interval: the 2.5 and 97.5 percentiles of the resampled differences;
* p-value (two-sided, against "no difference"): the resampled differences shifted to mean zero
  under the null, ``p = (1 + #{|d* - d| >= |d|}) / (B + 1)``, where ``d`` is the observed
  difference; a column where both runs score identically on every turn gets ``p = 1``.

* minimum detectable effect (MDE): ``2.80 x`` the standard deviation of the resampled
  differences, the smallest true difference this pair of runs detects at alpha 0.05 with 80%
  power (:mod:`.power`); a difference below it that is "not significant" says little.

Run B may be a leaderboard entry or submission folder (its gzipped log). Both logs are streamed
(:mod:`.turns`): memory is the bench plus a few hundred bytes per turn, whatever the log sizes.
The bench is loaded once, from run A's recorded location (else run B's, else the registry).

Scores are percentages; differences are in points.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..schema import Bench
from .power import minimum_detectable_effect
from .report import RunResults, escape_markdown, load_run

COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+", "Avg")
METRIC_LABELS = {"ap50": "AP50", "giou": "gIoU"}
_CHUNK = 500  # resamples per matrix product: memory stays chunk x dialogues, not resamples x dialogues
_CHUNK_CELLS = 1 << 20  # ... and fewer resamples per product when there are many dialogues (8 MB a matrix)


@dataclass(frozen=True)
class ComparisonRow:
    """One column of a comparison: both scores, their difference, its interval and p-value."""

    metric: str
    column: str
    n: int
    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float
    mde: float = 0.0  # minimum detectable effect (points) at alpha 0.05, power 0.8


@dataclass
class Comparison:
    """The paired comparison of run A with run B (``diff = A - B``)."""

    label_a: str
    label_b: str
    bench_name: str
    bench_hash: str
    dialogues: int
    resamples: int
    seed: int
    rows: list[ComparisonRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, metric: str, column: str) -> ComparisonRow | None:
        return next((r for r in self.rows if r.metric == metric and r.column == column), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _column_of(round_: int) -> str:
    return f"R{round_}" if round_ < 8 else "R8+"


def paired_arrays(scores_a: Sequence, scores_b: Sequence) -> dict[str, np.ndarray]:
    """Per-turn arrays of both runs aligned on (dialogue, turn).

    Raises:
        ValueError: when the runs did not answer the same turns.
    """
    by_key_b = {(s.dialogue_id, s.turn): s for s in scores_b}
    keys_a = {(s.dialogue_id, s.turn) for s in scores_a}
    if keys_a != set(by_key_b):
        only_a, only_b = len(keys_a - set(by_key_b)), len(set(by_key_b) - keys_a)
        raise ValueError(
            f"the runs did not answer the same turns ({only_a} only in A, {only_b} only in B); "
            "compare finished runs of the same bench and --limit"
        )
    ids: dict[str, int] = {}
    dialogue, rounds, hit_a, hit_b, m_a, m_b = [], [], [], [], [], []
    for s in scores_a:
        other = by_key_b[(s.dialogue_id, s.turn)]
        dialogue.append(ids.setdefault(s.dialogue_id, len(ids)))
        rounds.append(s.round)
        hit_a.append(float(s.hit))
        hit_b.append(float(other.hit))
        m_a.append(np.nan if s.mask_iou is None else s.mask_iou)
        m_b.append(np.nan if other.mask_iou is None else other.mask_iou)
    return {
        "dialogue": np.asarray(dialogue, dtype=np.int64),
        "round": np.asarray(rounds, dtype=np.int64),
        "ap50_a": np.asarray(hit_a),
        "ap50_b": np.asarray(hit_b),
        "giou_a": np.asarray(m_a, dtype=np.float64),
        "giou_b": np.asarray(m_b, dtype=np.float64),
    }


@dataclass(frozen=True)
class PairedStat:
    """One selection's paired statistic, in points: ``diff`` (A - B), its 95% interval, the
    two-sided p-value and the standard error (standard deviation of the resampled differences)."""

    diff: float
    low: float
    high: float
    p_value: float
    se: float


def resample_ratios(
    dialogue: np.ndarray,
    values: np.ndarray,
    selections: Sequence[np.ndarray],
    *,
    n_bootstrap: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, samples)``: the mean of ``values`` over each selection of turns, and its
    ``n_bootstrap`` resamples over dialogues (``samples[b, j]``; NaN where a draw holds no turn
    of selection ``j``).

    One resample draws D dialogues with replacement; a dialogue's weight is how often it was
    drawn, and each selection's mean is a ratio of weighted per-dialogue sums: one matrix
    product per chunk of resamples for all selections. A chunk holds at most
    :data:`_CHUNK_CELLS` weights, so memory does not grow with the resamples.
    """
    n_dialogues = int(dialogue.max()) + 1
    count = np.stack([np.bincount(dialogue[sel], minlength=n_dialogues).astype(np.float64) for sel in selections])
    total = np.stack([np.bincount(dialogue[sel], weights=values[sel], minlength=n_dialogues) for sel in selections])
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = total.sum(axis=1) / count.sum(axis=1)
    sums = np.ascontiguousarray(np.vstack([total, count]).T)  # D x 2S: one product gives both
    k = len(selections)
    rng = np.random.default_rng(seed)
    samples = np.empty((n_bootstrap, k), dtype=np.float64)
    chunk = max(1, min(_CHUNK, _CHUNK_CELLS // n_dialogues))
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        draws = rng.integers(0, n_dialogues, size=(size, n_dialogues))
        flat = (draws + (np.arange(size) * n_dialogues)[:, None]).ravel()
        del draws
        weights = np.bincount(flat, minlength=size * n_dialogues).reshape(size, n_dialogues).astype(np.float64)
        del flat
        weighted = weights @ sums
        with np.errstate(invalid="ignore", divide="ignore"):
            samples[start:start + size] = weighted[:, :k] / weighted[:, k:]
    return observed, samples


def paired_bootstrap_many(
    dialogue: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    selections: Sequence[np.ndarray],
    *,
    n_bootstrap: int,
    seed: int,
) -> list[PairedStat]:
    """The paired statistic of ``values_a - values_b`` for several selections of turns, resampling
    whole dialogues (the same draws for both runs and every selection)."""
    diff = values_a - values_b
    observed, samples = resample_ratios(dialogue, diff, selections, n_bootstrap=n_bootstrap, seed=seed)
    out = []
    for j, selection in enumerate(selections):
        d = float(observed[j])
        column = samples[:, j]
        column = column[np.isfinite(column)]  # a draw without any turn of this selection says nothing
        if column.size == 0:
            out.append(PairedStat(d * 100, d * 100, d * 100, 1.0, 0.0))
            continue
        low, high = np.percentile(column, [2.5, 97.5])
        if np.all(diff[selection] == 0):
            p = 1.0
        else:
            extreme = np.count_nonzero(np.abs(column - d) >= abs(d) - 1e-12)
            p = (1 + extreme) / (column.size + 1)
        se = float(column.std(ddof=1)) if column.size > 1 else 0.0
        out.append(PairedStat(d * 100, float(low) * 100, float(high) * 100, float(min(p, 1.0)), se * 100))
    return out


def paired_bootstrap(
    dialogue: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    select: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
) -> PairedStat:
    """:func:`paired_bootstrap_many` for one selection of turns."""
    return paired_bootstrap_many(dialogue, values_a, values_b, [select], n_bootstrap=n_bootstrap, seed=seed)[0]


def compare_scores(scores_a: Sequence, scores_b: Sequence, *, n_bootstrap: int = 10_000, seed: int = 0,
                   label_a: str = "A", label_b: str = "B", bench_name: str = "", bench_hash: str = "") -> Comparison:
    """Paired comparison of two lists of :class:`~regiondial_bench.metrics.TurnScore`."""
    if n_bootstrap < 1:
        raise ValueError("the paired bootstrap needs at least one resample")
    arrays = paired_arrays(scores_a, scores_b)
    comparison = Comparison(label_a, label_b, bench_name, bench_hash,
                            dialogues=int(arrays["dialogue"].max()) + 1 if len(arrays["dialogue"]) else 0,
                            resamples=n_bootstrap, seed=seed)
    if len(arrays["dialogue"]) == 0:
        comparison.notes.append("no turns to compare")
        return comparison
    columns = np.asarray([_column_of(r) for r in arrays["round"].tolist()])
    metrics = ["ap50"]
    both_masks = ~np.isnan(arrays["giou_a"]) & ~np.isnan(arrays["giou_b"])
    if both_masks.any():
        metrics.append("giou")
    else:
        comparison.notes.append("gIoU is not compared: at least one run has no masks")
    for metric in metrics:
        a, b = arrays[f"{metric}_a"], arrays[f"{metric}_b"]
        valid = ~np.isnan(a) & ~np.isnan(b)
        chosen = []
        for column in COLUMNS:
            select = valid & (columns == column if column != "Avg" else True)
            if select.any():
                chosen.append((column, select))
        stats = paired_bootstrap_many(arrays["dialogue"], np.nan_to_num(a), np.nan_to_num(b),
                                      [np.flatnonzero(sel) for _, sel in chosen], n_bootstrap=n_bootstrap, seed=seed)
        for (column, select), stat in zip(chosen, stats, strict=True):
            comparison.rows.append(ComparisonRow(
                metric=metric, column=column, n=int(select.sum()),
                a=round(100 * float(a[select].mean()), 4), b=round(100 * float(b[select].mean()), 4),
                diff=round(stat.diff, 4), low=round(stat.low, 4), high=round(stat.high, 4),
                p_value=round(stat.p_value, 6), mde=round(minimum_detectable_effect(stat.se), 4),
            ))
    return comparison


def compare_runs(run_a: str | Path | RunResults, run_b: str | Path | RunResults, *, n_bootstrap: int = 10_000,
                 seed: int = 0, bench: Bench | None = None) -> Comparison:
    """Paired bootstrap comparison of two scored runs on the same bench.

    Args:
        run_a: a run folder (or loaded run).
        run_b: another run folder, or a submission folder (``predictions.jsonl.gz``).
        n_bootstrap: paired resamples of dialogues.
        seed: the resampling seed.
        bench: the bench both runs answered (default: run A's recorded one, else run B's).

    Raises:
        ValueError: when the runs were made on different benches or answered different turns.
        FileNotFoundError: when a run has no results or prediction log.
    """
    a = run_a if isinstance(run_a, RunResults) else load_run(run_a)
    b = run_b if isinstance(run_b, RunResults) else load_run(run_b)
    pa, pb = a.results.provenance, b.results.provenance
    if pa.bench_hash != pb.bench_hash:
        raise ValueError(
            f"the runs were made on different benches ({pa.bench_name} {pa.bench_hash[:19]} vs "
            f"{pb.bench_name} {pb.bench_hash[:19]}); a paired comparison needs the same bench"
        )
    logs = [run.predictions_path() for run in (a, b)]
    for run, log in zip((a, b), logs, strict=True):
        if log is None:
            raise FileNotFoundError(f"{run.path}: no prediction log (predictions.jsonl) beside the results; "
                                    "a paired comparison re-scores each turn")
    if bench is None:
        bench = _shared_bench(a, b)
    elif bench.content_hash != pa.bench_hash:
        raise ValueError(f"the given bench has hash {bench.content_hash}, the runs were made on {pa.bench_hash}")
    label_a, label_b = a.label, b.label
    if label_a == label_b:  # tell them apart by folder, as reports do
        label_a = f"{label_a} [{a.path.name if a.path else 'A'}]"
        label_b = f"{label_b} [{b.path.name if b.path else 'B'}]"
    from .turns import stream_turn_scores

    scores_a = stream_turn_scores(bench, logs[0])
    scores_b = stream_turn_scores(bench, logs[1])
    comparison = compare_scores(scores_a, scores_b, n_bootstrap=n_bootstrap, seed=seed, label_a=label_a,
                                label_b=label_b, bench_name=pa.bench_name, bench_hash=pa.bench_hash)
    if pa.reference_mode != pb.reference_mode:
        comparison.notes.append(
            f"note: the runs used different reference modes (A {pa.reference_mode}, B {pb.reference_mode}): "
            "the difference includes the effect of the references each turn was given"
        )
    return comparison


def _shared_bench(a: RunResults, b: RunResults) -> Bench:
    """The bench of two runs with the same bench hash, loaded once: A's, else B's."""
    from ..bench.registry import BenchUnavailable
    from .turns import load_run_bench

    problems = []
    for run in (a, b):
        try:
            return load_run_bench(run)
        except (FileNotFoundError, ValueError, BenchUnavailable) as exc:
            problems.append(f"{run.label}: {exc}")
    raise ValueError("cannot load the runs' bench (" + "; ".join(problems) + "); pass the bench explicitly")


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _caption(c: Comparison) -> str:
    return (f"diff = A - B in points; 95% paired bootstrap interval over {c.dialogues} dialogues "
            f"({c.resamples} resamples, seed {c.seed}); p two-sided against no difference; MDE: the "
            "smallest true difference these runs detect (alpha 0.05, 80% power), 2.80 x the resampled "
            "differences' standard deviation")


def render_markdown(c: Comparison) -> str:
    """One Markdown table per metric (labels escaped)."""
    lines = [f"A: {escape_markdown(c.label_a)}  ", f"B: {escape_markdown(c.label_b)}  ",
             f"bench: {escape_markdown(c.bench_name)} ({c.bench_hash[:19]})", ""]
    for metric in METRIC_LABELS:
        rows = [r for r in c.rows if r.metric == metric]
        if not rows:
            continue
        lines += [f"**{METRIC_LABELS[metric]}**", "", "| | " + " | ".join(r.column for r in rows) + " |",
                  "|---|" + "---:|" * len(rows)]
        lines.append("| turns | " + " | ".join(str(r.n) for r in rows) + " |")
        lines.append("| A | " + " | ".join(f"{r.a:.1f}" for r in rows) + " |")
        lines.append("| B | " + " | ".join(f"{r.b:.1f}" for r in rows) + " |")
        lines.append("| A - B | " + " | ".join(f"{r.diff:+.1f}" for r in rows) + " |")
        lines.append("| 95% CI | " + " | ".join(f"[{r.low:+.1f}, {r.high:+.1f}]" for r in rows) + " |")
        lines.append("| p | " + " | ".join(_p_text(r.p_value) for r in rows) + " |")
        lines.append("| MDE | " + " | ".join(f"{r.mde:.1f}" for r in rows) + " |")
        lines.append("")
    lines += [_caption(c), *c.notes]
    return "\n".join(lines) + "\n"


def render_terminal(c: Comparison, console=None) -> None:  # noqa: ANN001
    """Print the comparison with rich; labels are plain text, never markup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    console.print(Text(f"A: {c.label_a}\nB: {c.label_b}\nbench: {c.bench_name} ({c.bench_hash[:19]})"))
    for metric in METRIC_LABELS:
        rows = [r for r in c.rows if r.metric == metric]
        if not rows:
            continue
        # one line per round column, so the table fits an 80-column terminal
        table = Table(title=Text(f"{METRIC_LABELS[metric]}: A - B"), box=box.SIMPLE_HEAD)
        for name in ("round", "turns", "A", "B", "A - B", "95% CI", "p", "MDE"):
            table.add_column(name, justify="left" if name == "round" else "right", no_wrap=True)
        for r in rows:
            table.add_row(r.column, str(r.n), f"{r.a:.1f}", f"{r.b:.1f}",
                          Text(f"{r.diff:+.1f}", style="bold" if r.p_value < 0.05 else ""),
                          Text(f"[{r.low:+.1f}, {r.high:+.1f}]"), _p_text(r.p_value), f"{r.mde:.1f}")
        console.print(table)
    console.print(Text("\n".join([_caption(c), *c.notes])))
