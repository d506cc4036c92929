"""Splitting a bench by dialogue, and merging shard run folders back into one run.

References never cross dialogues, so a bench split by dialogue is evaluated exactly in every
reference mode: shard ``I`` of ``N`` answers its dialogues as the unsharded run would, and the
merge of all ``N`` shard folders is a run folder that ``score``, ``report``, ``plot`` and
``submit`` treat like an unsharded one.

The split (:func:`split_dialogues`) balances shards by *turns*: dialogues are taken longest
first and each goes to the shard with the fewest turns so far (ties: fewer dialogues, then the
lower index). It depends only on the bench and ``N``, so every rank computes the same split.

Launchers (:func:`detect_launch`): under ``torchrun`` / ``accelerate launch`` (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) or a SLURM job array (``SLURM_ARRAY_TASK_ID``,
``SLURM_ARRAY_TASK_COUNT``), ``regiondial evaluate`` picks its shard from the environment.

This module reads and writes run folders only; scoring the merged log is ``api.merge``'s job.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    PredictionRecord,
    RunSpec,
    ShardInfo,
    read_prediction_log,
)
from .folder import atomic_write

_SHARD_TEXT = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,9})\s*$")
_SHARD_FOLDER = re.compile(r"^shard-(\d+)-of-(\d+)$")
# settings that may differ between the shards of one run
_FREE_FIELDS = {"bench_location", "batch_size", "shard"}


class ShardError(ValueError):
    """Shards that cannot be merged, or a shard argument that makes no sense."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    >>> parse_shard("1/4")
    (1, 4)
    """
    match = _SHARD_TEXT.match(str(text))
    if not match:
        raise ShardError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/2")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ShardError(f"--shard {text!r}: the index must be in 0..N-1 and N >= 1")
    return index, count


def shard_folder_name(index: int, count: int) -> str:
    """``shard-I-of-N``: the folder a launched rank writes under ``--out``."""
    return f"shard-{index}-of-{count}"


def split_dialogues(bench: Bench, count: int) -> list[list[str]]:
    """The dialogue ids of each of ``count`` shards, balanced by turns, each in bench order.

    Longest dialogues first, each to the shard with the fewest turns so far (ties: fewer
    dialogues, lower index); a shard's turn total exceeds another's by at most one dialogue's
    turns. Deterministic: the same bench and count give the same split on every rank.
    """
    if count < 1:
        raise ShardError(f"the shard count must be >= 1, got {count}")
    dialogues = list(bench)
    order = sorted(range(len(dialogues)), key=lambda i: (-len(dialogues[i].turns), i))
    load = [(0, 0, k) for k in range(count)]  # (turns, dialogues, shard index): a heap
    members: list[list[int]] = [[] for _ in range(count)]
    for i in order:
        turns, n, k = heapq.heappop(load)
        members[k].append(i)
        heapq.heappush(load, (turns + len(dialogues[i].turns), n + 1, k))
    return [[dialogues[i].dialogue_id for i in sorted(m)] for m in members]


def shard_info(bench: Bench, index: int, count: int) -> ShardInfo:
    """Shard ``index`` of ``count`` of ``bench`` (see :func:`split_dialogues`)."""
    if not 0 <= index < count:
        raise ShardError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return ShardInfo(index=index, count=count, dialogue_ids=split_dialogues(bench, count)[index])


def subset(bench: Bench, dialogue_ids: Sequence[str]) -> Bench:
    """The dialogues named in ``dialogue_ids``, in bench order; an unknown id is an error."""
    wanted = set(dialogue_ids)
    unknown = [d for d in dialogue_ids if d not in bench._by_id]
    if unknown:
        raise ShardError(f"{len(unknown)} dialogue id(s) of the shard are not in bench {bench.name!r} "
                         f"(first: {unknown[0]!r})")
    return Bench([d for d in bench if d.dialogue_id in wanted], name=bench.name, version=bench.version,
                 root=bench.root, source=bench.source, issues=bench.issues, image_files=bench.image_files)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """This process's place in a launched job: shard ``index`` of ``count``.

    ``local_rank`` is the rank on this node (torchrun/accelerate), None under a SLURM array
    (each array task sees its own GPUs). ``distributed`` says whether a torch.distributed process
    group can be set up (torchrun's ``MASTER_ADDR``/``MASTER_PORT`` are present).
    """

    index: int
    count: int
    local_rank: int | None
    source: str
    distributed: bool = False

    @property
    def folder_name(self) -> str:
        return shard_folder_name(self.index, self.count)

    def device(self) -> str | None:
        """``cuda:LOCAL_RANK`` when this node has CUDA devices and a local rank, else None."""
        if self.local_rank is None:
            return None
        try:
            import torch
        except ImportError:
            return None
        if not torch.cuda.is_available():
            return None
        return f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}"

    def describe(self) -> str:
        return f"{self.source}: shard {self.index}/{self.count}"


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ShardError(f"environment variable {name}={value!r} is not an integer") from None


def detect_launch(env: Mapping[str, str] | None = None) -> Launch | None:
    """The shard this process should evaluate, from launcher environment variables, or None.

    torchrun / accelerate: ``RANK`` of ``WORLD_SIZE`` (``LOCAL_RANK`` picks the GPU). SLURM job
    array: ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``. Both at
    once (torchrun inside each array task): shard ``task * WORLD_SIZE + RANK`` of
    ``tasks * WORLD_SIZE``. A world of one process is no launch.
    """
    env = os.environ if env is None else env
    rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
    local_rank = _int_env(env, "LOCAL_RANK")
    task, tasks = _int_env(env, "SLURM_ARRAY_TASK_ID"), _int_env(env, "SLURM_ARRAY_TASK_COUNT")
    torch_launch = None
    if world is not None and world > 1:
        if rank is None or not 0 <= rank < world:
            raise ShardError(f"RANK={env.get('RANK')!r} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
        torch_launch = (rank, world)
    array_launch = None
    if task is not None and tasks is not None and tasks > 1:
        step = _int_env(env, "SLURM_ARRAY_TASK_STEP") or 1
        first = _int_env(env, "SLURM_ARRAY_TASK_MIN") or 0
        if step != 1:
            raise ShardError(f"SLURM array step {step}: shard by a contiguous array (--array=0-{tasks - 1})")
        if not 0 <= task - first < tasks:
            raise ShardError(f"SLURM_ARRAY_TASK_ID={task} is outside the array ({first}..{first + tasks - 1})")
        array_launch = (task - first, tasks)
    distributed = torch_launch is not None and bool(env.get("MASTER_ADDR")) and bool(env.get("MASTER_PORT"))
    if torch_launch and array_launch:
        (r, w), (t, n) = torch_launch, array_launch
        return Launch(t * w + r, n * w, local_rank, "slurm array x torchrun", distributed)
    if torch_launch:
        return Launch(*torch_launch, local_rank, "torchrun", distributed)
    if array_launch:
        return Launch(*array_launch, None, "slurm array", False)
    return None


class ProcessGroup:
    """A gloo process group over the launched ranks, for the barrier before rank 0 merges.

    gloo runs on CPU tensors, so it works on GPU and CPU nodes alike and needs nothing from the
    adapter. ``timeout_s`` bounds how long a finished rank waits for the slowest one.
    """

    def __init__(self, timeout_s: float) -> None:
        from datetime import timedelta

        import torch.distributed as dist

        self._dist = dist
        self._owned = not dist.is_initialized()
        if self._owned:
            dist.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
        self.rank = dist.get_rank()

    def barrier(self) -> None:
        self._dist.barrier()

    def close(self) -> None:
        if self._owned and self._dist.is_initialized():
            self._dist.destroy_process_group()


def open_process_group(launch: Launch | None, timeout_s: float = 86400.0) -> ProcessGroup | None:
    """A :class:`ProcessGroup` when the launch has a rendezvous and torch is installed, else None."""
    if launch is None or not launch.distributed:
        return None
    try:
        return ProcessGroup(timeout_s)
    except ImportError:
        return None


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


@dataclass
class ShardRun:
    """A shard run folder as read for merging."""

    folder: Path
    spec: RunSpec
    records: list[PredictionRecord]

    @property
    def shard(self) -> ShardInfo:
        assert self.spec.shard is not None
        return self.spec.shard


def expand_shard_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Each path as given, or, for a folder holding ``shard-I-of-N`` folders (a launched run's
    ``--out``), those folders."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            children = sorted((p for p in path.iterdir() if p.is_dir() and _SHARD_FOLDER.match(p.name)),
                              key=lambda p: int(_SHARD_FOLDER.match(p.name).group(1)))
            if children:
                out.extend(children)
                continue
        out.append(path)
    return out


def read_shard(folder: str | Path) -> ShardRun:
    """Read a shard folder's ``run.json`` and prediction log; a clear error when it is not one."""
    folder = Path(folder)
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise ShardError(f"{folder} is not a run folder: {RUN_FILE} is missing")
    try:
        spec = RunSpec.model_validate_json(run_file.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise ShardError(f"{run_file}: not a valid run spec ({str(exc).splitlines()[0]})") from None
    if spec.shard is None:
        raise ShardError(f"{folder} is not a shard: its {RUN_FILE} covers the whole bench (no 'shard')")
    log = folder / PREDICTIONS_FILE
    try:  # strict, as score reads: every line a record, duplicates kept for check_shards to refuse
        records = read_prediction_log(log, strict=True) if log.is_file() else []
    except ValueError as exc:
        raise ShardError(f"{str(exc)[:500]}; repair it with `regiondial evaluate --out {folder} --resume`") from None
    return ShardRun(folder, spec, records)


def _settings(spec: RunSpec) -> dict:
    return spec.model_dump(mode="json", exclude=_FREE_FIELDS)


def check_shards(shards: Sequence[ShardRun], bench: Bench, bench_hash: str | None = None) -> None:
    """Raise :class:`ShardError` unless the shards are one complete, disjoint split of ``bench``.

    ``bench_hash`` is the full bench's hash when ``bench`` is its first ``limit`` dialogues.

    Checks: same bench hash and settings (all but the bench location, batch size and shard),
    the same shard count, every index once, every dialogue of ``bench`` in exactly one shard,
    and every shard's log answering each of its turns (nothing else).
    """
    if not shards:
        raise ShardError("no shard folders given")
    first = shards[0]
    bench_hash = bench_hash or bench.content_hash
    if first.spec.bench_hash != bench_hash:
        raise ShardError(f"{first.folder} was run on bench {first.spec.bench_hash}, but the bench given "
                         f"is {bench_hash}; pass the bench the shards used (--bench)")
    reference = _settings(first.spec)
    for other in shards[1:]:
        if other.spec.bench_hash != first.spec.bench_hash:
            raise ShardError(f"{other.folder} was run on another bench ({other.spec.bench_hash}) than "
                             f"{first.folder} ({first.spec.bench_hash})")
        settings = _settings(other.spec)
        changed = sorted(k for k in set(reference) | set(settings) if reference.get(k) != settings.get(k))
        if changed:
            raise ShardError(f"{other.folder} was run with other settings than {first.folder} "
                             f"({', '.join(changed)} differ)")
    counts = {s.shard.count for s in shards}
    if len(counts) > 1:
        raise ShardError(f"the folders come from different splits (shard counts {sorted(counts)})")
    count = counts.pop()
    by_index: dict[int, ShardRun] = {}
    for s in shards:
        if s.shard.index in by_index:
            raise ShardError(f"shard {s.shard.index}/{count} is given twice: {by_index[s.shard.index].folder} "
                             f"and {s.folder}")
        by_index[s.shard.index] = s
    missing_shards = [i for i in range(count) if i not in by_index]
    if missing_shards:
        raise ShardError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing_shards)} missing: "
                         f"got {len(shards)} of {count} folders")
    owner: dict[str, Path] = {}
    for s in shards:
        for dialogue_id in s.shard.dialogue_ids:
            if dialogue_id in owner:
                where = f"{owner[dialogue_id]} and {s.folder}" if owner[dialogue_id] != s.folder else str(s.folder)
                raise ShardError(f"dialogue {dialogue_id!r} is in more than one shard ({where})")
            owner[dialogue_id] = s.folder
    for dialogue in bench:
        if dialogue.dialogue_id not in owner:
            raise ShardError(f"dialogue {dialogue.dialogue_id!r} of bench {bench.name!r} is in no shard")
    extra = [d for d in owner if d not in bench._by_id]
    if extra:
        raise ShardError(f"dialogue {extra[0]!r} of {owner[extra[0]]} is not in bench {bench.name!r}")
    for s in shards:
        seen: set[tuple[str, int]] = set()
        for record in s.records:
            if record.key in seen:
                twice = sum(r.key == record.key for r in s.records)
                raise ShardError(f"{s.folder} answers turn {record.dialogue_id}#{record.turn} {twice} times; a log "
                                 "answers each turn once (score refuses it too), so it cannot be merged")
            seen.add(record.key)
        expected = {(d, t.index) for d in s.shard.dialogue_ids for t in bench.dialogue(d).turns}
        answered = seen
        stray = sorted(answered - expected)
        if stray:
            raise ShardError(f"{s.folder} answers turn {stray[0][0]}#{stray[0][1]}, which is not in its shard")
        unanswered = sorted(expected - answered)
        if unanswered:
            raise ShardError(
                f"{s.folder} is unfinished: {len(unanswered)} of {len(expected)} turns unanswered "
                f"(first: {unanswered[0][0]}#{unanswered[0][1]}); resume it (evaluate ... --resume)"
            )


def merged_spec(shards: Sequence[ShardRun]) -> RunSpec:
    """The run spec of the merge: the shards' settings, no shard (it covers the whole bench)."""
    return shards[0].spec.model_copy(update={"shard": None})


def merged_records(shards: Sequence[ShardRun], bench: Bench) -> list[PredictionRecord]:
    """Every shard's records in bench order (dialogue, then turn), as an unsharded run scores them."""
    by_key = {r.key: r for s in shards for r in s.records}
    return [by_key[(d.dialogue_id, t.index)] for d in bench for t in d.turns]


def shards_complete(folder: str | Path, count: int) -> bool:
    """Whether all ``count`` shard folders under ``folder`` have finished (``results.json`` written)."""
    folder = Path(folder)
    return all((folder / shard_folder_name(i, count) / RESULTS_FILE).is_file() for i in range(count))


def _is_merge_of(out: Path, shard_dirs: Sequence[Path]) -> bool:
    """Whether ``out`` holds an earlier merge: its shards live inside it, or its results say so."""
    if shard_dirs and all(Path(d).resolve().parent == out.resolve() for d in shard_dirs):
        return True
    try:
        timings = json.loads((out / RESULTS_FILE).read_bytes())["provenance"]["timings"]
        return isinstance(timings, dict) and "shards" in timings
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check_output(out_dir: str | Path, shard_dirs: Sequence[Path]) -> None:
    """Refuse an output folder that is one of the shards or inside one: merging never writes its inputs."""
    out = Path(out_dir).resolve()
    for folder in shard_dirs:
        shard = Path(folder).resolve()
        if out == shard or shard in out.parents:
            raise ShardError(f"--out {out_dir} is {'the' if out == shard else 'inside the'} shard folder {folder}, an "
                             "input of the merge; merge into another folder (e.g. the shards' parent)")


def write_merged_folder(out_dir: str | Path, spec: RunSpec, records: Sequence[PredictionRecord], *,
                        shard_dirs: Sequence[Path] = (), overwrite: bool = False) -> Path:
    """Write ``run.json`` and ``predictions.jsonl`` of a merged run into ``out_dir``.

    A folder already holding a run is refused unless ``overwrite``, or unless it holds an earlier
    merge with the same settings (merging again is idempotent: a launched run's rerun).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = out / RUN_FILE
    if existing.is_file() and not overwrite:
        try:
            previous = RunSpec.model_validate_json(existing.read_bytes())
        except (ValidationError, ValueError):
            previous = None
        if (previous is None or previous.shard is not None or previous.fingerprint() != spec.fingerprint()
                or not _is_merge_of(out, shard_dirs)):
            raise ShardError(f"{out} already holds another run; merge into a new --out folder or pass --overwrite")
    (out / RESULTS_FILE).unlink(missing_ok=True)
    atomic_write(out / PREDICTIONS_FILE, "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records))
    atomic_write(existing, spec.model_dump_json(indent=2) + "\n")
    return out
