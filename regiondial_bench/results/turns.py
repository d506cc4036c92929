"""Per-turn scores of a run, streamed from its prediction log: one record in memory at a time.

``compare``, ``plot`` and the failure breakdown need each turn's hit, mask IoU, round and failure,
not the records themselves (the raw answers and questions are most of a log's size). Reading the
whole log first held every record: 1.4 GB for a comparison of two 114k-turn runs. Here each
record is scored as it is read and dropped, so memory is the bench plus a few hundred bytes per
turn.

The scores are those of :func:`regiondial_bench.metrics.turn_scores` (the same per-turn function,
:func:`~regiondial_bench.metrics.score_record`), with masks scored when any record has one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..metrics import IncompleteRunError, TurnScore, score_record
from ..schema import Bench, iter_prediction_log

MAX_ERROR_CHARS = 1000
"""Characters of a failure reason kept per turn (a hostile log may carry megabytes per record)."""


def stream_turn_scores(bench: Bench, log: str | Path, *, strict: bool = True) -> list[TurnScore]:
    """Score every record of a prediction log against ``bench`` while reading it; bench order.

    Args:
        bench: the bench the run answered.
        log: ``predictions.jsonl`` or ``predictions.jsonl.gz``.
        strict: every line must be a record and no turn may be answered twice (scoring,
            comparing); otherwise unreadable lines are skipped and a later record for a turn
            replaces an earlier one (an unfinished run, as ``--resume`` reads it).

    Returns:
        The scores of the answered turns (a run may be unfinished), in bench order.

    Raises:
        IncompleteRunError: a turn answered twice (``strict``), or records naming turns the bench
            does not have.
        ValueError: an unreadable log or line (``strict``).
    """
    scores: dict[tuple[str, int], TurnScore] = {}
    unknown: list[str] = []
    any_mask = False
    for record in iter_prediction_log(log, strict=strict):
        key = record.key
        try:
            dialogue = bench.dialogue(record.dialogue_id)
        except KeyError:
            dialogue = None
        if dialogue is None or not 0 <= record.turn < len(dialogue.turns):
            if len(unknown) < 5:
                unknown.append(f"{record.dialogue_id[:80]}#{record.turn}")
            else:
                unknown.append("")
            continue
        if strict and key in scores:
            raise IncompleteRunError(f"turn {record.dialogue_id}#{record.turn} is answered twice")
        any_mask = any_mask or record.mask is not None
        # masks are scored as they come; if no record has one they are dropped below, which is
        # turn_scores' rule (masks are scored when any record has a mask)
        score = score_record(dialogue.dialogue_id, dialogue.turns[record.turn], record, masks=True)
        if score.error is not None and len(score.error) > MAX_ERROR_CHARS:
            score = dataclasses.replace(score, error=score.error[:MAX_ERROR_CHARS])
        scores[key] = score
    if unknown:
        shown = [u for u in unknown if u]
        raise IncompleteRunError(f"{len(unknown)} predictions name turns the bench does not have: {shown}")
    ordered = [scores[(d.dialogue_id, t.index)] for d in bench for t in d.turns if (d.dialogue_id, t.index) in scores]
    if not any_mask:
        ordered = [s if s.mask_union is None else dataclasses.replace(s, mask_inter=None, mask_union=None)
                   for s in ordered]
    return ordered


def run_turn_scores(run: Any, bench: Any = None) -> list[Any]:
    """Per-turn scores of a run, re-scored from its prediction log against its bench.

    Args:
        run: a :class:`~.report.RunResults` (a run folder or submission) with a prediction log.
        bench: the bench; by default the one recorded in ``run.json`` / the results' provenance.
    """
    log = run.predictions_path()
    if log is None:
        raise FileNotFoundError(f"{run.path}: no prediction log (predictions.jsonl) beside the results")
    if bench is None:
        bench = load_run_bench(run)
    return stream_turn_scores(bench, log)


def load_run_bench(run: Any) -> Any:
    """The bench a run was scored on: its recorded location, else the bench of that name."""
    from ..bench.registry import default_bench_resolver
    from ..bench.specs import load_bench

    prov = run.results.provenance
    locations = [run.spec.bench_location if run.spec else "", prov.bench_location]
    for location in locations:
        if location and Path(location).exists():
            bench = load_bench(location)
            if bench.content_hash == prov.bench_hash:
                return bench
    bench = default_bench_resolver()(prov.bench_name)
    if bench.content_hash != prov.bench_hash:
        raise ValueError(f"{run.label}: bench {prov.bench_name!r} has changed since the run (hash mismatch)")
    return bench
