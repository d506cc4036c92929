"""Shards: a balanced deterministic split, merges equal to unsharded runs, launchers, sweeps."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from regiondial_bench import api
from regiondial_bench.cli import main
from regiondial_bench.publish.submission import create_submission, default_bench_resolver
from regiondial_bench.run.folder import RunFolderError
from regiondial_bench.run.shards import ShardError, detect_launch, parse_shard, split_dialogues
from regiondial_bench.schema import (
    REFERENCE_MODES,
    Bench,
    Dialogue,
    ImageRef,
    Reference,
    RunConfig,
    RunSpec,
    Turn,
)

from .helpers import make_bench, register_test_adapters

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ORACLE = "test-slow-flaky-oracle"


def metrics_json(results) -> str:
    """Everything of results.json except provenance (timestamps, timings): the per-round metrics."""
    return results.model_dump_json(exclude={"provenance"})


def uneven_bench(lengths) -> Bench:
    dialogues = []
    for d, n in enumerate(lengths):
        turns = [Turn(index=t, question="q" if t == 0 else "near <box>{context_bbox}</box>",
                      gold_boxes=[(1.0, 1.0, 5.0 + t, 5.0)], references=[Reference(turn=t - 1)] if t else [])
                 for t in range(n)]
        dialogues.append(Dialogue(dialogue_id=f"x{d}", image=ImageRef(width=20, height=20), turns=turns))
    return Bench(dialogues, name="uneven")


# ------------------------------------------------------------------------------------ the split


def test_split_is_balanced_by_turns_not_dialogues():
    bench = uneven_bench([10, 10, 1, 1, 1, 1])
    shards = split_dialogues(bench, 2)
    turns = [sum(len(bench.dialogue(i).turns) for i in s) for s in shards]
    assert turns == [12, 12]  # a split by dialogue count (3 + 3 in order) would give 21 and 3
    assert sorted(i for s in shards for i in s) == sorted(d.dialogue_id for d in bench)
    for s in shards:  # each shard keeps bench order
        assert s == sorted(s, key=lambda i: int(i[1:]))
    assert split_dialogues(bench, 2) == shards  # deterministic


def test_split_bound_holds_on_many_lengths():
    lengths = [(7 * k) % 11 + 1 for k in range(200)]
    bench = uneven_bench(lengths)
    for n in (1, 2, 3, 8):
        shards = split_dialogues(bench, n)
        turns = [sum(len(bench.dialogue(i).turns) for i in s) for s in shards]
        assert max(turns) - min(turns) <= max(lengths)
        assert sum(len(s) for s in shards) == len(bench)
    assert [len(s) for s in split_dialogues(uneven_bench([1, 1]), 3)] == [1, 1, 0]


def test_parse_shard():
    assert parse_shard(" 3/4 ") == (3, 4)
    for bad in ("4/4", "1/0", "-1/2", "a/b", "1", "1/2/3", "9" * 20 + "/2"):
        with pytest.raises(ShardError):
            parse_shard(bad)


# ------------------------------------------------------------------------------------ merge


@pytest.fixture
def tiny(tmp_path):
    register_test_adapters()
    # ids d0..d11: two id lengths, so the scripted failures differ between dialogues (CIs are not degenerate)
    return make_bench(tmp_path / "bench", n_dialogues=12, turns=5)


def run_shards(bench, config, root: Path, count: int = 2) -> list[Path]:
    folders = []
    for i in range(count):
        folder = root / f"s{i}"
        api.evaluate(bench, config, folder, progress=False, n_bootstrap=50, shard=(i, count))
        folders.append(folder)
    return folders


@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_merged_shards_equal_the_unsharded_run(tiny, tmp_path, mode):
    config = RunConfig(adapter=ORACLE, reference_mode=mode, batch_size=3, mask_producer="box",
                       adapter_options={"delay": 0.0})
    full = api.evaluate(tiny, config, tmp_path / "full", progress=False, n_bootstrap=50)
    assert 0 < full.overall.ap50 < 100  # failures propagate along references: the mode matters
    folders = run_shards(tiny, config, tmp_path)
    merged = api.merge(folders, tmp_path / "merged")
    assert metrics_json(merged) == metrics_json(full)
    on_disk = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert on_disk["rounds"] == json.loads((tmp_path / "full" / "results.json").read_text())["rounds"]
    spec = RunSpec.model_validate_json((tmp_path / "merged" / "run.json").read_text())
    assert spec.shard is None and spec.bench_hash == tiny.content_hash
    assert metrics_json(api.score(tmp_path / "merged", n_bootstrap=50)) == metrics_json(full)
    report = create_submission(tmp_path / "merged", f"merged-{mode}", root=tmp_path / "subs",
                               resolve_bench=default_bench_resolver({"tiny": str(tmp_path / "bench")}))
    assert report.status == "verified", report.problems


def test_shard_run_json_records_the_full_bench_and_its_dialogues(tiny, tmp_path):
    config = RunConfig(adapter="oracle", limit=7)
    api.evaluate(tiny, config, tmp_path / "s1", progress=False, n_bootstrap=0, shard=(1, 3))
    spec = RunSpec.model_validate_json((tmp_path / "s1" / "run.json").read_text())
    assert spec.bench_hash == tiny.content_hash
    limited = Bench(tiny.dialogues[:7], name="tiny")
    assert (spec.shard.index, spec.shard.count) == (1, 3)
    assert spec.shard.dialogue_ids == split_dialogues(limited, 3)[1]
    logged = {json.loads(line)["dialogue_id"] for line in (tmp_path / "s1" / "predictions.jsonl").open()}
    assert logged == set(spec.shard.dialogue_ids)
    rescored = api.score(tmp_path / "s1", n_bootstrap=0)  # a shard folder re-scores on its own
    assert rescored.overall.n == sum(len(tiny.dialogue(d).turns) for d in spec.shard.dialogue_ids)


def test_resuming_a_shard_with_another_split_is_refused(tiny, tmp_path):
    config = RunConfig(adapter="oracle")
    api.evaluate(tiny, config, tmp_path / "s", progress=False, n_bootstrap=0, shard=(0, 2))
    with pytest.raises(RunFolderError, match="shard"):
        api.evaluate(tiny, config, tmp_path / "s", resume=True, progress=False, n_bootstrap=0, shard=(0, 3))
    with pytest.raises(RunFolderError, match="shard"):
        api.evaluate(tiny, config, tmp_path / "s", resume=True, progress=False, n_bootstrap=0)
    api.evaluate(tiny, config, tmp_path / "s", resume=True, progress=False, n_bootstrap=0, shard=(0, 2))


def _edit_spec(folder: Path, **shard_update) -> None:
    path = folder / "run.json"
    data = json.loads(path.read_text())
    data["shard"].update(shard_update)
    path.write_text(json.dumps(data))


def test_merge_errors_name_the_problem(tiny, tmp_path):
    config = RunConfig(adapter="oracle")
    s0, s1 = run_shards(tiny, config, tmp_path)
    ids0 = json.loads((s0 / "run.json").read_text())["shard"]["dialogue_ids"]
    ids1 = json.loads((s1 / "run.json").read_text())["shard"]["dialogue_ids"]

    with pytest.raises(ShardError, match=r"shard\(s\) 1/2 missing"):
        api.merge([s0], tmp_path / "m")
    with pytest.raises(ShardError, match="given twice"):
        api.merge([s0, s0], tmp_path / "m")

    dup = tmp_path / "dup"
    shutil.copytree(s1, dup)
    _edit_spec(dup, dialogue_ids=[*ids1, ids0[0]])
    with pytest.raises(ShardError, match=f"dialogue '{ids0[0]}' is in more than one shard"):
        api.merge([s0, dup], tmp_path / "m")

    short = tmp_path / "short"
    shutil.copytree(s1, short)
    _edit_spec(short, dialogue_ids=ids1[1:])
    with pytest.raises(ShardError, match=f"dialogue '{ids1[0]}' of bench 'tiny' is in no shard"):
        api.merge([s0, short], tmp_path / "m")

    stray = tmp_path / "stray"
    shutil.copytree(s1, stray)
    with open(stray / "predictions.jsonl", "a") as f:
        f.write((s0 / "predictions.jsonl").read_text().splitlines(keepends=True)[0])
    with pytest.raises(ShardError, match=f"{stray} answers turn {ids0[0]}#0, which is not in its shard"):
        api.merge([s0, stray], tmp_path / "m")

    unfinished = tmp_path / "unfinished"
    shutil.copytree(s1, unfinished)
    lines = (s1 / "predictions.jsonl").read_text().splitlines(keepends=True)
    (unfinished / "predictions.jsonl").write_text("".join(lines[:-2]))
    with pytest.raises(ShardError, match="unfinished: 2 of .* turns unanswered"):
        api.merge([s0, unfinished], tmp_path / "m")

    other = tmp_path / "other"
    api.evaluate(tiny, config.model_copy(update={"reference_mode": "gold"}), other, progress=False,
                 n_bootstrap=0, shard=(1, 2))
    with pytest.raises(ShardError, match="other settings .*reference_mode"):
        api.merge([s0, other], tmp_path / "m")

    whole = tmp_path / "whole"
    api.evaluate(tiny, config, whole, progress=False, n_bootstrap=0)
    with pytest.raises(ShardError, match="is not a shard"):
        api.merge([s0, whole], tmp_path / "m")
    broken = tmp_path / "broken"
    shutil.copytree(s1, broken)
    (broken / "run.json").write_text('{"adapter": [' * 5000)
    with pytest.raises(ShardError, match="not a valid run spec"):
        api.merge([s0, broken], tmp_path / "m")
    with pytest.raises(ShardError, match="already holds another run"):
        api.merge([s0, s1], whole)
    results = json.loads((s0 / "results.json").read_text())
    results["provenance"]["bootstrap"]["resamples"] = 10**12  # hostile: would never finish
    (s0 / "results.json").write_text(json.dumps(results))
    with pytest.raises(ShardError, match="bootstrap settings .* invalid"):
        api.merge([s0, s1], tmp_path / "m")
    assert not (tmp_path / "m").exists()  # nothing written by a refused merge


def test_merge_applies_the_rules_of_score_and_of_the_validator(tiny, tmp_path):
    """Observed: a shard answering every turn twice was merged (the later answers winning, AP50 69.8 ->
    35.7) with exit 0, and a record's question was never compared with the bench."""
    config = RunConfig(adapter="oracle")
    s0, s1 = run_shards(tiny, config, tmp_path)
    twice = tmp_path / "twice"
    shutil.copytree(s1, twice)
    lines = (s1 / "predictions.jsonl").read_text().splitlines(keepends=True)
    (twice / "predictions.jsonl").write_text("".join(lines + lines))
    first = json.loads(lines[0])
    with pytest.raises(ShardError, match=f"answers turn {first['dialogue_id']}#{first['turn']} 2 times"):
        api.merge([s0, twice], tmp_path / "m")
    result = CliRunner().invoke(main, ["merge", str(s0), str(twice), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "2 times" in result.output and "Traceback" not in result.output

    foreign = tmp_path / "foreign"
    shutil.copytree(s1, foreign)
    records = [json.loads(line) for line in lines]
    records[2]["question"] = "Output exactly this box: <box>[1, 1, 5, 5]</box>"
    (foreign / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ShardError, match=f"1 merged record.s. were not asked what the bench asks .first: dialogue "
                                         f"'{records[2]['dialogue_id']}' turn {records[2]['turn']} question: logged"):
        api.merge([s0, foreign], tmp_path / "m")

    edited = tmp_path / "edited"
    shutil.copytree(s1, edited)
    records = [json.loads(line) for line in lines]
    records[0]["regions"] = [{"box": [0.0, 0.0, 2.0, 2.0]}]
    (edited / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ShardError, match="do not hold what their raw_text gives"):
        api.merge([s0, edited], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_never_writes_an_input_nor_a_folder_in_use(tiny, tmp_path):
    config = RunConfig(adapter="oracle")
    s0, s1 = run_shards(tiny, config, tmp_path)
    before = (s0 / "predictions.jsonl").read_bytes()
    for out in (s0, s0 / "inner"):
        with pytest.raises(ShardError, match="shard folder .* an input of the merge"):
            api.merge([s0, s1], out, overwrite=True)
    assert (s0 / "predictions.jsonl").read_bytes() == before and not (s0 / "inner").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen(  # holds the folder's run lock as a running evaluate does
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(busy / "run.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(main, ["merge", str(s0), str(s1), "--out", str(busy), "--overwrite"])
        assert result.exit_code == 1 and "is in use by another regiondial process" in result.output, result.output
        assert not (busy / "predictions.jsonl").exists()
    finally:
        holder.communicate("")
    assert api.merge([s0, s1], busy, overwrite=True).overall.n == tiny.num_turns


def test_cli_merge_and_parent_folder(tiny, tmp_path):
    runner = CliRunner()
    for i in range(2):
        result = runner.invoke(main, ["evaluate", "--model", "oracle", "--bench", str(tmp_path / "bench"),
                                      "--shard", f"{i}/2", "--out", str(tmp_path / "run" / f"shard-{i}-of-2"),
                                      "--no-progress", "--bootstrap", "20"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["merge", str(tmp_path / "run"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "from 2 shards" in result.output
    result = runner.invoke(main, ["merge", str(tmp_path / "run" / "shard-0-of-2"), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "1/2 missing" in result.output


# ------------------------------------------------------------------------------------ launchers


def test_detect_launch_from_the_environment():
    assert detect_launch({}) is None
    assert detect_launch({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    torch_env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    launch = detect_launch(torch_env)
    assert (launch.index, launch.count, launch.local_rank, launch.distributed) == (3, 4, 1, True)
    assert launch.folder_name == "shard-3-of-4"
    slurm = detect_launch({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "5"})
    assert (slurm.index, slurm.count, slurm.local_rank, slurm.distributed) == (1, 3, None, False)
    both = detect_launch({**torch_env, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    assert (both.index, both.count) == (7, 8)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "4"},
                {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3"},
                {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "2"}):
        with pytest.raises(ShardError):
            detect_launch(bad)


def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python finds the test oracle through the adapter entry-point group."""
    site = tmp_path / "site"
    dist = site / "shardtest-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shardtest\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[regiondial_bench.adapters]\n{ORACLE} = tests.core.helpers:SlowFlakyOracle\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), str(site)])
    return env


EVALUATE = ["-m", "regiondial_bench.cli", "evaluate", "--model", ORACLE, "--batch-size", "3",
            "--no-progress", "--bootstrap", "50"]


def test_slurm_array_tasks_write_shards_and_the_last_one_merges(tiny, tmp_path):
    env = plugin_env(tmp_path)
    bench = str(tmp_path / "bench")
    out = tmp_path / "out"
    full = api.evaluate(tiny, RunConfig(adapter=ORACLE, batch_size=3), tmp_path / "full", progress=False,
                        n_bootstrap=50, bench_location=bench)
    for task in ("1", "0"):
        proc = subprocess.run([sys.executable, *EVALUATE, "--bench", bench, "--out", str(out)],
                              env={**env, "SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": "2"},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert (out / f"shard-{task}-of-2" / "results.json").is_file()
        if task == "1":
            assert not (out / "results.json").exists() and "the last one to finish merges" in proc.stderr
    assert "merged 2 shards" in proc.stderr and "(the last shard to finish)" in proc.stderr
    assert metrics_json(api.score(out, n_bootstrap=50)) == metrics_json(full)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_torchrun_two_processes_gloo_equal_one_process(tiny, tmp_path):
    env = plugin_env(tmp_path)
    bench = str(tmp_path / "bench")
    out = tmp_path / "torchrun"
    config = RunConfig(adapter=ORACLE, batch_size=3, reference_mode="predicted")
    full = api.evaluate(tiny, config, tmp_path / "full", progress=False, n_bootstrap=50)
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [shutil.which("torchrun"), "--nproc-per-node", "2", "--master-port", str(port),
           *EVALUATE, "--bench", bench, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("(rank 0 after a barrier)") == 1  # the gloo process group, not the file race
    merged = api.Results.read(out / "results.json")
    assert metrics_json(merged) == metrics_json(full)
    assert merged.provenance.timings["shards"] == 2.0
    spec = RunSpec.model_validate_json((out / "run.json").read_text())
    assert spec.shard is None
    for i in range(2):
        shard = RunSpec.model_validate_json((out / f"shard-{i}-of-2" / "run.json").read_text()).shard
        assert (shard.index, shard.count) == (i, 2)
    # every shard resumes independently: a rerun with --resume answers nothing new and re-merges
    before = (out / "shard-0-of-2" / "predictions.jsonl").read_text()
    proc = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "shard-0-of-2" / "predictions.jsonl").read_text() == before
    assert metrics_json(api.Results.read(out / "results.json")) == metrics_json(full)


# ------------------------------------------------------------------------------------ sweeps


class CountingOracle:
    constructed = 0


def test_sweep_loads_the_adapter_once_for_two_benches_and_two_modes(tmp_path, monkeypatch):
    from regiondial_bench.adapters import get_adapter_class, register_adapter
    from regiondial_bench.adapters.base import AdapterError
    from regiondial_bench.adapters.builtin import OracleAdapter

    try:
        get_adapter_class("test-counting-oracle")
    except AdapterError:
        @register_adapter("test-counting-oracle")
        class Counting(OracleAdapter):
            def __init__(self) -> None:
                super().__init__()
                CountingOracle.constructed += 1

    make_bench(tmp_path / "a", n_dialogues=3, turns=3)
    b = make_bench(tmp_path / "b", n_dialogues=4, turns=2)
    (tmp_path / "b" / "manifest.json").write_text(
        (tmp_path / "b" / "manifest.json").read_text().replace('"name": "tiny"', '"name": "tiny-b"'))
    assert b.content_hash
    CountingOracle.constructed = 0
    runner = CliRunner()
    out = tmp_path / "sweep"
    result = runner.invoke(main, ["evaluate", "--model", "test-counting-oracle", "--bench", str(tmp_path / "a"),
                                  "--bench", str(tmp_path / "b"), "--reference-mode", "predicted",
                                  "--reference-mode", "gold", "--masks", "box", "--out", str(out),
                                  "--no-progress", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert CountingOracle.constructed == 1
    runs = sorted(p.name for p in out.iterdir() if (p / "results.json").is_file())
    assert runs == ["tiny-b-gold", "tiny-b-predicted", "tiny-gold", "tiny-predicted"]
    for name in runs:
        spec = RunSpec.model_validate_json((out / name / "run.json").read_text())
        assert name.endswith(spec.reference_mode) and spec.bench_name == name.rsplit("-", 1)[0]
    table = runner.invoke(main, ["report", str(out), "--format", "csv", "--metric", "ap50"])
    assert table.exit_code == 0, table.output
    assert table.output.count("test-counting-oracle") == 4
    plots = runner.invoke(main, ["plot", str(out), "--out", str(tmp_path / "plots")])
    assert plots.exit_code == 0, plots.output
    assert (tmp_path / "plots" / "error_accumulation.png").is_file()


def test_a_launched_adapter_without_a_device_gets_a_warning(tiny, tmp_path, monkeypatch):
    from regiondial_bench.run.shards import Launch

    monkeypatch.setattr(Launch, "device", lambda self: "cuda:1")  # as on a node with GPUs
    messages: list[str] = []
    launch = Launch(index=0, count=1, local_rank=1, source="test")
    runs = api.plan_sweep([(tiny, "")], ["gold"], tmp_path / "out")
    api.evaluate_sweep(runs, RunConfig(adapter="oracle"), launch=launch, progress=False, n_bootstrap=0,
                       log=messages.append)
    assert any("takes no device" in m and "CUDA_VISIBLE_DEVICES" in m for m in messages)
    assert runs[0].merged and (tmp_path / "out" / "shard-0-of-1" / "run.json").is_file()


def test_torchrun_inside_slurm_array_tasks_merges_when_the_last_task_ends(tiny, tmp_path, monkeypatch):
    """Each array task's process group covers only its own ranks: its rank 0 must not merge early."""
    import regiondial_bench.run.shards as shards_module
    from regiondial_bench.run.shards import Launch

    class OneRankGroup:  # this process is rank 0 of its task's group; the other rank is simulated
        rank = 0

        def barrier(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(shards_module, "open_process_group", lambda launch: OneRankGroup())
    config = RunConfig(adapter=ORACLE, batch_size=3, adapter_options={"delay": 0.0})
    full = api.evaluate(tiny, config, tmp_path / "full", progress=False, n_bootstrap=20)
    out = tmp_path / "out"
    source = "slurm array x torchrun"
    for task in (1, 0):  # task 1 (shards 2, 3) finishes first
        messages: list[str] = []
        for rank in (1, 0):
            launch = Launch(index=task * 2 + rank, count=4, local_rank=rank, source=source, distributed=True)
            runs = api.evaluate_sweep(api.plan_sweep([(tiny, str(tmp_path / "bench"))], ["predicted"], out),
                                      config, launch=launch, progress=False, n_bootstrap=20, log=messages.append)
        if task == 1:
            assert not runs[0].merged and not (out / "results.json").exists()
            assert any("the last one to finish merges" in m for m in messages)
    assert runs[0].merged and any("merged 4 shards" in m for m in messages)
    assert metrics_json(api.Results.read(out / "results.json")) == metrics_json(full)
