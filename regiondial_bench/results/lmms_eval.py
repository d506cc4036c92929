"""``report --format lmms-eval``: runs as an lmms-eval results file, for the tools that collect those.

lmms-eval (like lm-evaluation-harness) writes one JSON per model: ``results.<task>["<metric>,<filter>"]``,
the task's settings under ``configs.<task>``, ``versions``, ``n-shot``, ``higher_is_better``,
``n-samples``, the run's ``config`` and the model's name. Here every run is a task group
``regiondial_<bench>_<reference mode>`` (Avg, over all turns) with one subtask per round
(``..._r1`` .. ``..._r7``, ``..._r8plus``), listed under ``group_subtasks``. Scores are percentages,
as in ``results.json`` (``configs.<task>.metadata.unit``); the filter is ``none``. A metric the run
does not have (gIoU without masks) is left out rather than written as null.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..metrics import MASK_PASS_THRESHOLDS
from ..schema import Results, RoundRow
from .report import RunResults

FILTER = "none"
METRIC_KEYS = ("ap50", "ap50_top1", "mean_iou", "giou", "ciou")


def task_name(results: Results) -> str:
    """``regiondial_<bench>_<reference mode>``, in lmms-eval's task-name alphabet.

    >>> from regiondial_bench.schema import Provenance, Results, RoundRow
    >>> row = RoundRow(round="all", n=1, ap50=0.0, ap50_top1=0.0, mean_iou=0.0)
    >>> prov = Provenance(bench_name="RefCOCO+ multi", bench_hash="sha256:0", adapter="x", reference_mode="gold",
    ...                   package_version="0")
    >>> task_name(Results(provenance=prov, rounds=[], overall=row))
    'regiondial_refcoco_multi_gold'
    """
    prov = results.provenance
    bench = re.sub(r"[^a-z0-9]+", "_", prov.bench_name.lower()).strip("_") or "bench"
    return f"regiondial_{bench}_{prov.reference_mode}"


def model_name_or_path(results: Results) -> str:
    """The checkpoint or served model the run evaluated, else the adapter's name."""
    config = results.provenance.adapter_config
    preset = config.get("preset") if isinstance(config.get("preset"), dict) else {}
    for value in (config.get("served_model"), preset.get("model"), config.get("model")):
        if isinstance(value, str) and value:
            return value
    return results.provenance.adapter


def _metrics(row: RoundRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in METRIC_KEYS:
        value = getattr(row, key)
        if value is not None:
            out[f"{key},{FILTER}"] = value
            out[f"{key}_stderr,{FILTER}"] = "N/A"  # the intervals are bootstrap percentiles, not a stderr
    for key, ci in (("ap50", row.ap50_ci), ("giou", row.giou_ci)):
        if ci is not None:
            out[f"{key}_ci95_low,{FILTER}"] = ci.low
            out[f"{key}_ci95_high,{FILTER}"] = ci.high
    for threshold, value in (row.mask_pass or {}).items():
        if value is not None:
            out[f"mask_iou_above_{threshold},{FILTER}"] = value
    out[f"failures,{FILTER}"] = row.failures
    return out


def _round_task(task: str, row: RoundRow) -> str:
    return f"{task}_r{row.round.replace('+', 'plus')}"


def lmms_eval_results(runs: Sequence[RunResults]) -> dict[str, Any]:
    """The lmms-eval results document of ``runs`` (all of one model).

    Raises:
        ValueError: the runs are of different models, or two runs would make the same task.
    """
    if not runs:
        raise ValueError("no runs to export")
    models = {model_name_or_path(run.results) for run in runs}
    if len(models) > 1:
        raise ValueError(f"an lmms-eval results file holds one model; these runs are of {sorted(models)}: "
                         "export each model's runs separately")
    doc: dict[str, Any] = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
                           "higher_is_better": {}, "n-samples": {}}
    for run in runs:
        results = run.results
        prov = results.provenance
        task = task_name(results)
        if task in doc["results"]:
            raise ValueError(f"two runs are both {task}; export them separately")
        rows = [*results.rounds, *results.buckets]
        doc["results"][task] = {"alias": task, **_metrics(results.overall)}
        for row in rows:
            name = _round_task(task, row)
            doc["results"][name] = {"alias": f" - round {row.round}", **_metrics(row)}
        doc["group_subtasks"][task] = [_round_task(task, row) for row in rows]
        metric_list = [{"metric": key, "aggregation": "mean", "higher_is_better": True} for key in METRIC_KEYS
                       if getattr(results.overall, key) is not None]
        metric_list += [{"metric": f"mask_iou_above_{t:g}", "aggregation": "mean", "higher_is_better": True}
                        for t in MASK_PASS_THRESHOLDS if results.overall.mask_pass]
        for name in [task, *doc["group_subtasks"][task]]:
            doc["configs"][name] = {
                "task": name,
                "dataset_path": prov.bench_location or prov.bench_name,
                "dataset_name": prov.bench_name,
                "dataset_hash": prov.bench_hash,
                "test_split": "test",
                "output_type": "generate_until",
                "metric_list": metric_list,
                "metadata": {"harness": "regiondial-bench", "version": prov.package_version, "unit": "percent",
                             "reference_mode": prov.reference_mode, "parser": prov.parser,
                             "mask_producer": prov.mask_producer},
            }
            doc["versions"][name] = prov.package_version
            doc["n-shot"][name] = 0
            doc["higher_is_better"][name] = {m["metric"]: True for m in metric_list}
        for name, row in [(task, results.overall), *((_round_task(task, r), r) for r in rows)]:
            doc["n-samples"][name] = {"original": row.n, "effective": row.n}
    first = runs[0].results.provenance
    doc["config"] = {
        "model": first.adapter,
        "model_args": first.adapter_config,
        "batch_size": first.batch_size,
        "limit": first.limit,
        "bootstrap_iters": first.bootstrap.get("resamples"),
        "random_seed": first.seed,
    }
    doc["model_name_or_path"] = doc["model_name"] = model_name_or_path(runs[0].results)
    doc["git_hash"] = first.git_revision
    doc["date"] = first.created_at
    doc["harness"] = {"name": "regiondial-bench", "version": __version__}
    return doc
