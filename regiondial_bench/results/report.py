"""Per-round tables of one or more runs, and the paper's 7-round tables side by side with new runs.

A table is data (:class:`Table`: a title, columns, labelled rows of numbers); renderers turn it
into terminal output (rich), Markdown, CSV or LaTeX. Every renderer escapes labels, so a model
called ``<script>`` or ``a|b`` cannot break the output it lands in.

Column names: ``"R1"``..``"R12"`` are round indices, ``"R8+"`` is the bucket of rounds 8 and
later, ``"Avg"`` is the micro-average over **all** turns (the reading of the paper's "Avg" that
its numbers are consistent with; UPSTREAM.md section 7.5).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..schema import PREDICTIONS_FILE, REPEATS_FILE, RESULTS_FILE, RUN_FILE, Results, RoundRow, RunSpec

PREDICTIONS_FILES = (PREDICTIONS_FILE, PREDICTIONS_FILE + ".gz")

METRICS: dict[str, str] = {
    "ap50": "AP50",
    "ap50_top1": "AP50 (top-1)",
    "mean_iou": "mean IoU",
    "giou": "gIoU",
    "ciou": "cIoU",
    "n": "turns",
    **{f"mask_pass_{t}": f"mask IoU above {t}" for t in ("0.3", "0.5", "0.7", "0.9")},
}
"""Metric keys of a :class:`~regiondial_bench.schema.RoundRow` that tables can show, with labels
(``mask_pass_<t>``: the share of turns whose mask IoU is above t, as upstream's per-round evaluator prints)."""

TASK_METRIC: dict[str, str] = {"detection": "ap50", "segmentation": "giou"}
"""The paper's two tasks and the metric each is reported in."""

PAPER_COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "Avg")
DEFAULT_COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+", "Avg")

RowKind = Literal["paper", "run", "diff", "count"]


# --------------------------------------------------------------------------------------------
# Loading runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResults:
    """A scored run as the reports see it: a label, its ``results.json`` and where it came from."""

    label: str
    results: Results
    path: Path | None = None
    spec: RunSpec | None = None

    @property
    def reference_mode(self) -> str:
        return self.results.provenance.reference_mode

    @property
    def adapter(self) -> str:
        return self.results.provenance.adapter

    def cell(self, metric: str, column: str) -> float | None:
        """The value of ``metric`` in ``column`` (``"R3"``, ``"R8+"``, ``"Avg"``), None if absent."""
        return cell_value(self.results, metric, column)

    def predictions_path(self) -> Path | None:
        """The prediction log beside the results (plain or gzipped), if there is one."""
        if self.path is None:
            return None
        for name in PREDICTIONS_FILES:
            if (self.path / name).is_file():
                return self.path / name
        return None


def column_row(results: Results, column: str) -> RoundRow | None:
    """The :class:`RoundRow` behind a table column name."""
    if column == "Avg":
        return results.overall
    if column.startswith("R"):
        return results.row(column[1:])
    raise ValueError(f"unknown column {column!r}: use R1..R12, R8+ or Avg")


def cell_value(results: Results, metric: str, column: str) -> float | None:
    """One number of a results file, or None when the run has no such round or metric."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    row = column_row(results, column)
    if row is None:
        return None
    if metric.startswith("mask_pass_"):
        value = (row.mask_pass or {}).get(metric.removeprefix("mask_pass_"))
    else:
        value = getattr(row, metric)
    return None if value is None else float(value)


MAX_RESULTS_BYTES = 64 << 20
"""A results file is a few kilobytes (per-round rows and provenance); a larger one is refused unread."""


def _read_json_strict(path: Path) -> Any:
    """JSON that rejects NaN/Infinity (which Python's json accepts by default), text that is not
    UTF-8, nesting too deep to decode and files far larger than any results file, each with a
    ``ValueError`` naming the file."""

    def reject(token: str) -> Any:
        raise ValueError(f"{path}: {token} is not a valid number in a results file")

    if path.stat().st_size > MAX_RESULTS_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, larger than any results file "
                         f"({MAX_RESULTS_BYTES} at most); refusing to read it")
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a results file") from None


def read_results(path: str | Path) -> Results:
    """Read and validate a ``results.json`` (NaN and Infinity are rejected with a clear error)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    data = _read_json_strict(path)
    try:
        return Results.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid results file: {exc}") from exc


def default_label(results: Results, folder: Path | None = None) -> str:
    """``adapter (reference mode)``, or the model name of a submission folder."""
    if folder is not None and (folder / "submission.yaml").is_file():
        try:
            import yaml

            meta = yaml.safe_load((folder / "submission.yaml").read_text(encoding="utf-8"))
            if isinstance(meta, dict) and isinstance(meta.get("model"), str):
                return meta["model"]
        except Exception:  # noqa: BLE001 - a bad yaml only loses the nicer label here
            pass
    prov = results.provenance
    return f"{prov.adapter} ({prov.reference_mode})"


def load_run(path: str | Path, label: str | None = None) -> RunResults:
    """Load a run folder (``results.json`` + optional ``run.json``), a submission folder, or a
    bare ``results.json``.

    Args:
        path: the folder or file.
        label: the row label; by default ``adapter (reference mode)`` or the submission's model.

    Raises:
        FileNotFoundError: when the folder has no ``results.json`` (run ``regiondial score``).
    """
    path = Path(path)
    if path.is_dir():
        folder = path
        results_path = path / RESULTS_FILE
        if not results_path.is_file():
            if (path / REPEATS_FILE).is_file():
                from ..run.folder import load_run_spec

                load_run_spec(path)  # says it is a repeats folder and names a repeat
            raise FileNotFoundError(
                f"{path} has no {RESULTS_FILE}; score the run first (regiondial score {path})"
            )
    else:
        folder = path.parent
        results_path = path
    results = read_results(results_path)
    spec = None
    if (folder / RUN_FILE).is_file():
        from ..run.folder import load_run_spec

        try:
            spec = load_run_spec(folder)
        except RuntimeError as exc:  # RunFolderError: names the file and why it cannot be read
            raise ValueError(str(exc)) from None
    return RunResults(label or default_label(results, folder), results, folder, spec)


def expand_run_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Each path as given, or, for a folder without ``results.json`` whose sub-folders are runs (a
    sweep's ``--out``), those sub-folders in name order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not (path / RESULTS_FILE).is_file():
            children = sorted(p for p in path.iterdir() if p.is_dir() and (p / RESULTS_FILE).is_file())
            if children:
                out.extend(children)
                continue
        out.append(path)
    return out


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] = ()) -> list[RunResults]:
    """Load several runs; labels that collide get the folder name appended.

    A sweep's parent folder stands for the run folders in it (:func:`expand_run_paths`).
    """
    paths = expand_run_paths(paths)
    if labels and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} runs; give one label per run")
    runs = [load_run(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    out = []
    for run in runs:
        if seen[run.label] > 1 and run.path is not None:
            run = RunResults(f"{run.label} [{run.path.name}]", run.results, run.path, run.spec)
        out.append(run)
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass
class TableRow:
    """One labelled row; ``cis`` holds (low, high) per cell where a bootstrap interval exists."""

    label: str
    values: list[float | None]
    kind: RowKind = "run"
    cis: list[tuple[float, float] | None] = field(default_factory=list)
    bench: str = ""  # the bench's name and short hash (see bench_label); shown when any row has one
    sd: list[float | None] = field(default_factory=list)  # a spread shown as "± sd" (repeats), per cell


@dataclass
class Table:
    """A rendered-agnostic table: title, column names, rows, and notes printed under it."""

    title: str
    columns: list[str]
    rows: list[TableRow]
    notes: list[str] = field(default_factory=list)
    label_header: str = "model"
    warnings: list[str] = field(default_factory=list)  # also in notes; the CLI prints them to stderr

    @property
    def show_bench(self) -> bool:
        return any(row.bench for row in self.rows)


def short_hash(bench_hash: str) -> str:
    """The first 8 hex digits of a ``sha256:`` content hash.

    >>> short_hash("sha256:36018ca12b6e9ec6")
    '36018ca1'
    """
    return bench_hash.removeprefix("sha256:")[:8]


def bench_label(results: Results) -> str:
    """``<bench name> <short hash>``: how tables, CSV rows and plot legends name a run's bench."""
    prov = results.provenance
    return f"{prov.bench_name} {short_hash(prov.bench_hash)}"


def mixed_bench_warning(runs: Sequence[RunResults]) -> str | None:
    """A warning when the runs were scored on different benches (name or content hash), else None."""
    benches = sorted({bench_label(run.results) for run in runs})
    if len(benches) < 2:
        return None
    return (f"warning: these runs are on {len(benches)} different benches ({', '.join(benches)}); "
            "their scores are not comparable")


def partial_run_warning(runs: Sequence[RunResults]) -> str | None:
    """A warning when runs of one bench cover different turns (``--limit``, a shard, an unmerged
    part) beside runs of the whole bench: their averages are over other turns, else None."""
    by_bench: dict[str, list[RunResults]] = {}
    for run in runs:
        by_bench.setdefault(run.results.provenance.bench_hash, []).append(run)
    partial = []
    for group in by_bench.values():
        most = max(run.results.overall.n for run in group)
        for run in group:
            prov, spec = run.results.provenance, run.spec
            why = []
            if prov.limit is not None:
                why.append(f"--limit {prov.limit}")
            if spec is not None and spec.shard is not None:
                why.append(f"shard {spec.shard.index}/{spec.shard.count}")
            if run.results.overall.n < most:
                partial.append(f"{run.label} ({run.results.overall.n} of {most} turns"
                               f"{': ' + ', '.join(why) if why else ''})")
    if not partial:
        return None
    return (f"warning: {'; '.join(partial)} cover fewer turns than the other runs of their bench; "
            "their rows are not comparable with full runs (merge shards with `regiondial merge`)")


def paper_bench_warnings(runs: Sequence[RunResults]) -> list[str]:
    """Warnings for runs that are not on the official RefCOCO+ bench the paper's tables use."""
    from ..bench.registry import official_bench

    out = []
    for run in runs:
        official = official_bench(run.results.provenance.bench_hash)
        if official == "refcocoplus":
            continue
        where = ("the official RefCOCOg bench, but the paper's 7-round tables are RefCOCO+" if official
                 else "not the official RefCOCO+ bench (recognised by content hash)")
        out.append(f"warning: {run.label} is on {bench_label(run.results)}, {where}; "
                   "its rows and differences do not compare like with like")
    return out


def _ci(results: Results, metric: str, column: str) -> tuple[float, float] | None:
    row = column_row(results, column)
    if row is None:
        return None
    ci = {"ap50": row.ap50_ci, "giou": row.giou_ci}.get(metric)
    return None if ci is None else (ci.low, ci.high)


def round_table(
    runs: Sequence[RunResults], metric: str = "ap50", columns: Sequence[str] | None = None
) -> Table:
    """Per-round values of one metric for several runs side by side.

    Args:
        runs: loaded runs, one row each.
        metric: a key of :data:`METRICS`.
        columns: column names; by default R1..R7, R8+ and Avg. ``all_round_columns`` lists
            every round index the runs have.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    cols = list(columns or DEFAULT_COLUMNS)
    rows = [
        TableRow(
            run.label,
            [run.cell(metric, c) for c in cols],
            "run",
            [_ci(run.results, metric, c) for c in cols],
            bench=bench_label(run.results),
        )
        for run in runs
    ]
    notes = ["Avg: micro-average over all turns; R8+: rounds 8 and later pooled."]
    modes = sorted({run.reference_mode for run in runs})
    if modes:
        notes.append("reference modes: " + ", ".join(modes))
    warnings = [w for w in (mixed_bench_warning(runs), partial_run_warning(runs)) if w]
    return Table(f"{METRICS[metric]} by round (%)", cols, rows, notes + warnings, warnings=warnings)


def summary_table(results: Results, title: str | None = None) -> Table:
    """One run's metrics (rows) by round (columns R1..R7, R8+, Avg): what ``evaluate`` prints."""
    p = results.provenance
    columns = [c for c in DEFAULT_COLUMNS if column_row(results, c) is not None]
    rows = [TableRow("turns", [cell_value(results, "n", c) for c in columns], "count")]
    metrics = ["ap50", "ap50_top1"]
    if results.overall.giou is not None:
        metrics += ["giou", "ciou"]
    rows += [TableRow(METRICS[m], [cell_value(results, m, c) for c in columns], "run",
                      [_ci(results, m, c) for c in columns]) for m in metrics]
    rows.append(TableRow("failures", [float(column_row(results, c).failures) for c in columns], "count"))
    notes = ["AP50 = Acc@0.5 (any box, IoU > 0.5); Avg = all turns (micro-average, R8+ included)."]
    if p.mask_producer == "box":
        notes.append("masks: the predicted boxes themselves (box-as-mask), not a segmenter.")
    title = title or f"{p.adapter} on {p.bench_name} ({p.reference_mode} references)"
    return Table(title, columns, rows, notes, label_header="metric")


def frame_check_lines(results: Results) -> tuple[str | None, str | None]:
    """The frame check in words: a summary line and the warning (each None when there is nothing to say).

    >>> from regiondial_bench.schema import FrameCheck
    >>> check = FrameCheck(declared="original", turns=4, boxes=4, outside_image=75.0, fits_unit=0.0,
    ...                    fits_1000=100.0, ap50_by_frame={"original": 0.0, "norm-1000": 100.0}, best="norm-1000")
    >>> frame_check_lines(Results.model_construct(frame_check=check))[0]
    'frame check (declared original): 75.0% of boxes outside the image, 0.0% would fit [0,1], 100.0% [0,1000]; AP50 read as original 0.0, norm-1000 100.0'
    """
    check = results.frame_check
    if check is None or not check.turns:
        return None, None
    readings = ", ".join(f"{name[:40]} {format_value(value)}" for name, value in list(check.ap50_by_frame.items())[:8])
    summary = (f"frame check (declared {check.declared[:40]}): {format_value(check.outside_image)}% of boxes outside "
               f"the image, {format_value(check.fits_unit)}% would fit [0,1], {format_value(check.fits_1000)}% "
               f"[0,1000]; AP50 read as {readings}")
    return summary, None if check.warning is None else check.warning[:1000]


def all_round_columns(runs: Iterable[RunResults]) -> list[str]:
    """``R1``..``Rk`` for every round index any run has, then ``R8+`` (if present) and ``Avg``."""
    indices: set[int] = set()
    has_bucket = False
    for run in runs:
        indices.update(int(r.round) for r in run.results.rounds)
        has_bucket = has_bucket or run.results.row("8+") is not None
    cols = [f"R{i}" for i in sorted(indices)]
    if has_bucket and max(indices, default=0) >= 8:
        cols.append("R8+")
    return [*cols, "Avg"]


@cache
def paper_tables() -> dict[str, Any]:
    """The paper's 7-round tables (``regiondial_bench/data/paper_tables.json``), the one copy."""
    text = resources.files("regiondial_bench").joinpath("data/paper_tables.json").read_text("utf-8")
    return json.loads(text)


def paper_rows(task: str) -> dict[str, list[float]]:
    """``{model: [R1..R7, Avg]}`` of the paper's ``detection`` or ``segmentation`` table."""
    tables = paper_tables()["tables"]
    if task not in tables:
        raise ValueError(f"unknown task {task!r}; the paper has {', '.join(tables)}")
    return {k: list(v) for k, v in tables[task]["rows"].items()}


def paper_table(runs: Sequence[RunResults], task: str = "detection", compare_to: str | None = None) -> Table:
    """The paper's 7-round table for ``task`` with the given runs as extra rows, and differences.

    Args:
        runs: loaded runs; each becomes a row in the paper's layout (R1..R7, Avg).
        task: ``"detection"`` (AP50) or ``"segmentation"`` (gIoU).
        compare_to: the paper row every run is compared with (``run - paper``); by default the
            last paper row (RegionReasoner-7B).
    """
    spec = paper_tables()["tables"].get(task)
    if spec is None:
        raise ValueError(f"unknown task {task!r}; choose detection or segmentation")
    reported = paper_rows(task)
    compare_to = compare_to or list(reported)[-1]
    if compare_to not in reported:
        raise ValueError(
            f"no paper row {compare_to!r} in the {task} table; choose from {', '.join(reported)}"
        )
    metric = TASK_METRIC[task]
    cols = list(PAPER_COLUMNS)
    paper_bench = "RefCOCO+ multi-turn (paper)"
    rows = [TableRow(f"{name} (paper)", list(values), "paper", bench=paper_bench)
            for name, values in reported.items()]
    base = reported[compare_to]
    diffs = []
    for run in runs:
        values = [run.cell(metric, c) for c in cols]
        label = bench_label(run.results)
        rows.append(TableRow(run.label, values, "run", [_ci(run.results, metric, c) for c in cols], bench=label))
        diff = [None if v is None else round(v - b, 1) for v, b in zip(values, base, strict=True)]
        diffs.append(TableRow(f"Δ {run.label}", diff, "diff", bench=label))
    rows.extend(diffs)
    notes = [
        f"{spec['title']}; paper rows copied from the paper.",
        "Avg: micro-average over all turns (rounds 8+ included), the reading the paper's Avg fits.",
    ]
    if runs:
        notes.append(f"Δ rows: the run minus {compare_to} (paper), in points.")
    if any(run.cell(metric, "R1") is None for run in runs):
        notes.append(f"'–': the run has no {METRICS[metric]} (no masks) or no such round.")
    warnings = paper_bench_warnings(runs)
    return Table(f"Paper table: {spec['title']}", cols, rows, notes + warnings, warnings=warnings)


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------


def format_value(value: float | None, kind: RowKind = "run", digits: int = 1) -> str:
    """``"89.3"``, ``"+1.2"`` for differences, ``"–"`` for a missing value.

    >>> format_value(89.25), format_value(-0.04, "diff"), format_value(None)
    ('89.2', '-0.0', '–')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "diff":
        return f"{value:+.{digits}f}"
    if kind == "count":
        return str(int(value))
    return f"{value:.{digits}f}"


def _cell(row: TableRow, i: int, with_ci: bool) -> str:
    text = format_value(row.values[i], row.kind)
    if row.sd and i < len(row.sd) and row.sd[i] is not None and row.values[i] is not None:
        text += f" ± {row.sd[i]:.1f}"
    if with_ci and row.cis and i < len(row.cis) and row.cis[i] is not None:
        low, high = row.cis[i]  # type: ignore[misc]
        text += f" [{low:.1f}, {high:.1f}]"
    return text


def escape_markdown(text: str) -> str:
    """Make a label inert in a Markdown table cell (no HTML, no column breaks, no links).

    >>> escape_markdown("<script>alert(1)</script> | [x](y)")
    '&lt;script&gt;alert(1)&lt;/script&gt; \\\\| \\\\[x\\\\](y)'
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\|[]`*_":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


def render_markdown(table: Table, with_ci: bool = False) -> str:
    """A GitHub-flavoured Markdown table with the title above and notes below."""
    lines = [f"**{escape_markdown(table.title)}**", ""]
    bench_col = ["bench"] if table.show_bench else []
    lines.append("| " + " | ".join([table.label_header, *bench_col, *table.columns]) + " |")
    lines.append("|---" + "|---" * len(bench_col) + "|---:" * len(table.columns) + "|")
    for row in table.rows:
        label = escape_markdown(row.label)
        if row.kind == "paper":
            label = f"*{label}*"
        cells = [_cell(row, i, with_ci) for i in range(len(table.columns))]
        bench = [escape_markdown(row.bench) or "–"] if table.show_bench else []
        lines.append("| " + " | ".join([label, *bench, *cells]) + " |")
    if table.notes:
        lines.append("")
        lines.extend(escape_markdown(n) for n in table.notes)
    return "\n".join(lines) + "\n"


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula in spreadsheet programs.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render_csv(table: Table) -> str:
    """CSV with columns ``table, kind, <label header>, <columns...>``; missing values are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    bench_col = ["bench"] if table.show_bench else []
    writer.writerow(["table", "kind", table.label_header, *bench_col, *table.columns])
    for row in table.rows:
        cells = [
            "" if v is None else str(int(v)) if float(v).is_integer() else f"{v:.2f}" for v in row.values
        ]
        bench = [_csv_safe(row.bench)] if table.show_bench else []
        writer.writerow([table.title, row.kind, _csv_safe(row.label), *bench, *cells])
        if row.sd:
            spread = ["" if v is None else f"{v:.2f}" for v in row.sd]
            writer.writerow([table.title, "sd", _csv_safe(row.label + " sd"), *bench, *spread])
    return buf.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "Δ": r"$\Delta$",
    "−": "--",
}


def escape_latex(text: str) -> str:
    r"""Escape LaTeX special characters.

    >>> escape_latex("a_b & 50%")
    'a\\_b \\& 50\\%'
    """
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(table: Table, with_ci: bool = False) -> str:
    """A ``booktabs`` table: paper rows first, a rule before the runs and before the differences;
    the best value of each column among paper and run rows is bold."""
    n = len(table.columns)
    best: list[float | None] = []
    for i in range(n):
        vals = [r.values[i] for r in table.rows if r.kind != "diff" and r.values[i] is not None]
        best.append(max(vals) if vals and table.label_header == "model" else None)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{escape_latex(table.title)}}}",
        r"\begin{tabular}{l" + "l" * table.show_bench + "r" * n + "}",
        r"\toprule",
        " & ".join([escape_latex(table.label_header.capitalize()), *(["Bench"] if table.show_bench else []),
                    *map(escape_latex, table.columns)])
        + r" \\",
        r"\midrule",
    ]
    previous: RowKind | None = None
    for row in table.rows:
        if previous is not None and row.kind != previous and "count" not in (row.kind, previous):
            lines.append(r"\midrule")
        previous = row.kind
        cells = []
        for i in range(n):
            text = escape_latex(_cell(row, i, with_ci)).replace("–", "--")
            if row.kind != "diff" and row.values[i] is not None and row.values[i] == best[i]:
                text = f"\\textbf{{{text}}}"
            cells.append(text)
        bench = [escape_latex(row.bench) or "--"] if table.show_bench else []
        lines.append(" & ".join([escape_latex(row.label), *bench, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_terminal(table: Table, with_ci: bool = False, console: Any = None) -> None:
    """Print the table with rich (labels are printed as plain text, never as rich markup).

    Nothing is cut off. A table wider than the console is printed compactly (labels wrap, a
    bootstrap interval goes under its value); if even that does not fit, it is printed at its
    own width and the terminal wraps the long lines (rich would otherwise crop the right-most
    columns, Avg first).
    """
    from rich.console import Console
    from rich.measure import Measurement

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)
    unlimited = console.options.update_width(10_000)
    rich_table = _rich_table(table, with_ci, compact=False)
    if Measurement.get(console, unlimited, rich_table).maximum > console.width:
        rich_table = _rich_table(table, with_ci, compact=True)
        needed = Measurement.get(console, unlimited, rich_table)
        if needed.minimum > console.width:
            width = console.width
            console.width = needed.maximum
            try:
                console.print(rich_table, crop=False)
            finally:
                console.width = width
            return
    console.print(rich_table)


def _rich_table(table: Table, with_ci: bool, compact: bool) -> Any:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    rich_table = RichTable(
        title=Text(table.title),
        caption=Text("\n".join(table.notes)),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    cells = [[_cell(row, i, with_ci) for i in range(len(table.columns))] for row in table.rows]
    if compact:
        cells = [[c.replace(" [", "\n[", 1) for c in row] for row in cells]
    # Only the labels may wrap (at spaces); the minimum widths keep every number whole.
    words = [w for row in table.rows for w in row.label.split()] + [table.label_header]
    rich_table.add_column(Text(table.label_header), overflow="fold", min_width=min(max(map(len, words)), 30))
    if table.show_bench:
        rich_table.add_column(Text("bench"), overflow="fold")
    for i, column in enumerate(table.columns):
        widest = max([len(column)] + [len(line) for row in cells for line in row[i].splitlines()])
        rich_table.add_column(Text(column), justify="right", no_wrap=True, min_width=widest)
    previous: RowKind | None = None
    for row, row_cells in zip(table.rows, cells, strict=True):
        if previous is not None and row.kind != previous and "count" not in (row.kind, previous):
            rich_table.add_section()
        previous = row.kind
        style = {"paper": "dim", "run": "bold", "diff": "italic", "count": ""}[row.kind]
        bench = [Text(row.bench or "–")] if table.show_bench else []
        rich_table.add_row(Text(row.label), *bench, *map(Text, row_cells), style=style)
    return rich_table


RENDERERS = {"markdown": render_markdown, "latex": render_latex}
FORMATS = ("terminal", "markdown", "csv", "latex")


def render_tables(tables: Sequence[Table], fmt: str, with_ci: bool = False) -> str:
    """Several tables as one text: Markdown/LaTeX blocks separated by a blank line, or one CSV
    with a single header (its ``table`` column tells the tables apart)."""
    if fmt != "csv":
        return "\n".join(render(t, fmt, with_ci=with_ci) for t in tables)
    out: list[str] = []
    header = None
    for table in tables:
        first, _, body = render_csv(table).partition("\n")
        if header is None:
            header = first
            out.append(first + "\n")
        elif first != header:  # different columns: a new header row, still one CSV stream
            out.append(first + "\n")
        out.append(body)
    return "".join(out)


def render(table: Table, fmt: str, with_ci: bool = False) -> str:
    """Render to text in ``markdown``, ``csv`` or ``latex`` (``terminal`` prints instead)."""
    if fmt == "csv":
        return render_csv(table)
    if fmt in RENDERERS:
        return RENDERERS[fmt](table, with_ci=with_ci)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

