"""Export, dry-run layout, publish (with a fake Hub) and loading back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from regiondial_bench.bench.build import BuildConfig, build_benchmark
from regiondial_bench.bench.hub import collect_benches, export_hub_folder, load_hub_bench, publish
from regiondial_bench.bench.sources import read_refer
from regiondial_bench.schema import Bench


@pytest.fixture(scope="module")
def two_builds(refer_root, tmp_path_factory):
    """Two benchmarks, as `regiondial build` writes them."""
    out = tmp_path_factory.mktemp("builds")
    reader = lambda s: read_refer(refer_root, "refcoco+", "unc", s)  # noqa: E731
    build_benchmark(reader, out / "plus", benchmark="refcocoplus_multiturn",
                    splits={"test": ["testA", "testB"], "val": ["val"]},
                    configs={"test": BuildConfig(name="refcocoplus_multiturn"), "val": BuildConfig(name="refcocoplus_multiturn")})
    build_benchmark(reader, out / "g", benchmark="refcocog_multiturn", splits={"test": ["testB"]},
                    configs={"test": BuildConfig(name="refcocog_multiturn", seed=1, question_style="expression")})
    return out / "plus", out / "g"


def test_dry_run_layout_and_configs_resolve(two_builds, tmp_path):
    import datasets

    folder = publish(two_builds, "me/regiondial", dry_run=tmp_path / "export")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "refcocoplus_multiturn/test-00000-of-00001.parquet" in files
    assert "refcocoplus_multiturn/val-00000-of-00001.parquet" in files
    assert "refcocog_multiturn/test-00000-of-00001.parquet" in files
    assert "bench/refcocog_multiturn/test/manifest.json" in files
    assert "official/refcocoplus_multiturn/val.json" in files
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["refcocoplus_multiturn", "refcocog_multiturn"]
    assert header["configs"][0]["data_files"][0] == {"split": "test", "path": "refcocoplus_multiturn/test-*"}
    assert "| R1 |" in card.replace("| R1 | R2", "| R1 |") and "Evaluation protocol" in card
    assert datasets.get_dataset_config_names(str(folder)) == ["refcocoplus_multiturn", "refcocog_multiturn"]
    g = datasets.load_dataset(str(folder), "refcocog_multiturn")
    assert list(g) == ["test"]
    assert g["test"].num_rows == len(Bench.load(two_builds[1] / "test"))
    assert isinstance(g["test"].features["image"], datasets.Image)


def test_export_round_trips_equal(two_builds, tmp_path):
    import datasets

    folder = publish([two_builds[0]], "me/regiondial", dry_run=tmp_path / "export")
    original = Bench.load(two_builds[0] / "val")
    rows = datasets.load_dataset(str(folder), "refcocoplus_multiturn", split="val")
    assert rows.num_rows == len(original)
    loaded = load_hub_bench(str(folder), cache_dir=tmp_path / "c")  # default config and split: test
    assert loaded.content_hash == Bench.load(two_builds[0] / "test").content_hash
    from regiondial_bench.bench.hub import parse_hub_spec

    assert parse_hub_spec("hf:me/regiondial:refcocoplus_multiturn:val")[1:] == ("refcocoplus_multiturn", "val", True)
    for dialogue in loaded:
        path = loaded.image_path(dialogue)
        assert path.read_bytes() == (two_builds[0] / "test" / dialogue.image.path).read_bytes()
    assert Bench.load(loaded.root).content_hash == loaded.content_hash


def test_hf_spec_loads_through_the_hub_calls(two_builds, tmp_path, monkeypatch):
    """hf:org/name:config:split goes to datasets.load_dataset and hf_hub_download (faked to the export)."""
    import datasets
    import huggingface_hub

    folder = publish(two_builds, "me/regiondial", dry_run=tmp_path / "export")
    real_load, real_default = datasets.load_dataset, datasets.get_dataset_default_config_name
    calls = []

    def fake_load(path, *args, **kwargs):
        calls.append(path)
        assert path == "me/regiondial"
        return real_load(str(folder), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(datasets, "get_dataset_default_config_name", lambda path: real_default(str(folder)))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, filename, **kw: str(folder / filename))
    bench = load_hub_bench("hf:me/regiondial:refcocoplus_multiturn:val")
    assert calls == ["me/regiondial"]
    assert bench.content_hash == Bench.load(two_builds[0] / "val").content_hash
    assert bench.name == "refcocoplus_multiturn"
    default = load_hub_bench("hf:me/regiondial")
    assert default.content_hash == Bench.load(two_builds[0] / "test").content_hash
    with pytest.raises(ValueError, match="has no split 'nope'"):
        load_hub_bench("hf:me/regiondial:refcocoplus_multiturn:nope")


def test_publish_calls_push_to_hub_with_the_dry_run_layout(two_builds, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    pushes, uploads = [], []

    def fake_push(self, repo_id, **kwargs):
        pushes.append((repo_id, kwargs["config_name"], kwargs["split"], kwargs["num_shards"], kwargs["private"], self.num_rows))

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kwargs):
            uploads.append(("create", repo_id, kwargs["private"]))

        def upload_folder(self, **kwargs):
            from pathlib import Path

            uploads.append(("upload", sorted(p.name for p in Path(kwargs["folder_path"]).iterdir()), kwargs["allow_patterns"]))

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", fake_push)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    publish(two_builds, "me/regiondial", private=True, token="t")
    plus_test = len(Bench.load(two_builds[0] / "test"))
    assert pushes[0] == ("me/regiondial", "refcocoplus_multiturn", "test", 1, True, plus_test)
    assert [p[1:3] for p in pushes] == [("refcocoplus_multiturn", "test"), ("refcocoplus_multiturn", "val"), ("refcocog_multiturn", "test")]
    assert uploads[0] == ("create", "me/regiondial", True)
    assert uploads[1][1] == ["README.md", "bench", "official", "refcocog_multiturn", "refcocoplus_multiturn"]


def test_errors_name_the_problem(tmp_path, two_builds):
    with pytest.raises(FileNotFoundError, match="is not a build output"):
        collect_benches([tmp_path])
    with pytest.raises(ValueError, match="org/name"):
        publish(two_builds, "not-a-repo", dry_run=tmp_path / "x")
    with pytest.raises(ValueError, match="two inputs give config"):
        collect_benches([two_builds[0], two_builds[0]])
    with pytest.raises(FileNotFoundError, match="not an exported bench folder"):
        load_hub_bench(str(tmp_path))
    export_hub_folder(collect_benches([two_builds[1]]), tmp_path / "e")
    with pytest.raises(FileExistsError, match="not empty"):
        export_hub_folder(collect_benches([two_builds[1]]), tmp_path / "e")


@pytest.mark.parametrize("escape", ["../../escaped.png", "ABSOLUTE"])
def test_loading_never_writes_outside_the_cache(tmp_path, escape):
    import numpy as np
    from PIL import Image

    from regiondial_bench.schema import Dialogue, ImageRef, Turn

    root = tmp_path / "a" / "b" / "bench"
    root.mkdir(parents=True)
    target = tmp_path / "a" / "escaped.png" if escape != "ABSOLUTE" else tmp_path / "abs" / "escaped.png"
    target.parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(target)
    image_path = escape if escape != "ABSOLUTE" else str(target)
    dialogue = Dialogue(dialogue_id="d0", image=ImageRef(path=image_path, width=8, height=8),
                        turns=[Turn(index=0, question="Find it.", gold_boxes=[(1, 1, 4, 4)])])
    bench = Bench([dialogue], name="evil", root=root)
    bench.save(root)
    folder = export_hub_folder({"evil": {"test": Bench.load(root)}}, tmp_path / f"export-{len(escape)}")
    target.unlink()  # the rows now name a file outside any cache folder
    with pytest.raises(ValueError, match="not a relative path inside the bench"):
        load_hub_bench(str(folder), cache_dir=tmp_path / "a" / "cache")
    assert not target.exists()


def test_a_reexported_folder_of_the_same_name_loads_its_new_content(refer_root, tmp_path):
    # datasets keys its cache for a local folder by name + config + file patterns; the loader must reread
    hashes = []
    for seed in (11, 12):
        out = tmp_path / f"build{seed}"
        build_benchmark(lambda s: read_refer(refer_root, "refcoco+", "unc", s), out, benchmark="stale_check",
                        splits={"test": ["testA"]}, configs={"test": BuildConfig(name="stale_check", seed=seed)})
        folder = publish([out], "me/regiondial", dry_run=tmp_path / f"run{seed}" / "same-name-export")
        loaded = load_hub_bench(str(folder), cache_dir=tmp_path / f"c{seed}")
        assert loaded.content_hash == Bench.load(out / "test").content_hash
        hashes.append(loaded.content_hash)
    assert hashes[0] != hashes[1]


def test_card_describes_the_cli_and_reference_modes_as_they_are(two_builds):
    from click.testing import CliRunner

    from regiondial_bench.bench.hub import dataset_card
    from regiondial_bench.cli import main
    from regiondial_bench.protocol import NO_REGION_TEXT

    benches = collect_benches(two_builds)
    card = dataset_card(benches, "me/regiondial")
    usage = card.split("With the `regiondial-bench` package: `")[1].split("`")[0]
    flags = [w for w in usage.split() if w.startswith("--")]
    help_text = CliRunner().invoke(main, ["evaluate", "--help"]).output
    assert flags and all(flag in help_text for flag in flags), flags
    protocol = card.split("## Evaluation protocol")[1]
    assert NO_REGION_TEXT in protocol and "gold fallback as upstream" not in protocol
    some_id = next(iter(benches["refcocoplus_multiturn"]["test"])).dialogue_id  # test = testA+testB
    assert some_id.startswith("test-testA-") or some_id.startswith("test-testB-")
    assert "`<split>-<source split>-<image id>`" in card


# --------------------------------------------------------------------------------------------
# The released test data (lmsdss/regionreasoner_test_data), bench specs, build folders
# --------------------------------------------------------------------------------------------


def _released_folder(root, configs=("refcocoplus", "refcocog"), images=True):
    """A folder laid out as lmsdss/regionreasoner_test_data: ``raw/<config>_multi_turn.json`` (dense
    masks) and ``raw/<config>_test_multi_bbox_images/<image id>.jpg``."""
    import json

    from PIL import Image

    (root / "raw").mkdir(parents=True)
    (root / "README.md").write_text("# RegionReasoner test data\n")
    for k, config in enumerate(configs):
        turns = [
            {"question": f"Find the {config} cat.", "bboxes": [[1, 1, 4, 4]], "ann_ids": [10 + k],
             "masks": [[[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]]},
            {"question": "Find the one left of the <box>{context_bbox}</box>.", "bboxes": [[0, 0, 2, 5]],
             "context_from_turn": 0, "ann_ids": [20 + k], "masks": [[[1, 1, 0, 0, 0]] * 5]},
        ]
        dialogues = [{"image_id": 42 + k, "conversational_turns": turns,
                      "image_path": f"{config}_test_multi_bbox_images/{42 + k}.jpg"},
                     {"image_id": 50 + k, "conversational_turns": turns[:1]}]  # no image_path, as most of RefCOCOg
        (root / "raw" / f"{config}_multi_turn.json").write_text(json.dumps(dialogues))
        if images:
            folder = root / "raw" / f"{config}_test_multi_bbox_images"
            folder.mkdir()
            for d in dialogues:
                Image.new("RGB", (5, 5), (k * 60, 90, 30)).save(folder / f"{d['image_id']}.jpg")
    return root


def _training_folder(root):
    """A folder laid out as lmsdss/regionreasoner_data: the samples JSON and its images."""
    import json

    from PIL import Image

    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "1.jpg")
    samples = [{"id": "1", "problem": "Find the cat.", "image": "images/1.jpg", "img_height": 8, "img_width": 8,
                "solution": json.dumps([{"bbox_2d": [1, 1, 5, 5], "point_2d": [3, 3]}])}]
    (root / "regionreasoner_train.json").write_text(json.dumps({"samples": samples}))
    return root


class FakeHub:
    """Stands in for huggingface_hub: serves a local folder as the dataset snapshot and records calls."""

    def __init__(self, folder, online=True, cached=True):
        self.folder, self.online, self.cached, self.calls = folder, online, cached, []

    def snapshot_download(self, **kwargs):
        self.calls.append(kwargs)
        if not kwargs.get("local_files_only") and not self.online:
            raise ConnectionError("no network")
        if kwargs.get("local_files_only") and not self.cached:
            raise FileNotFoundError("not in cache")
        import fnmatch
        import shutil

        out = Path(kwargs["local_dir"]) if kwargs.get("local_dir") else self.folder.parent / f"snapshot-{len(self.calls)}"
        patterns = kwargs.get("allow_patterns")
        for file in self.folder.rglob("*"):
            rel = file.relative_to(self.folder).as_posix()
            if file.is_file() and (patterns is None or any(fnmatch.fnmatch(rel, p) for p in patterns)):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, out / rel)
        return str(out)


def test_hf_spec_fetches_the_released_file_with_masks(tmp_path, monkeypatch):
    from regiondial_bench import api
    from regiondial_bench.bench import hub

    fake = FakeHub(_released_folder(tmp_path / "repo"))
    monkeypatch.setattr(hub, "HubClient", lambda: fake)
    bench = api.load_bench("hf:lmsdss/regionreasoner_test_data@abc123:refcocoplus")
    assert bench.name == "refcocoplus_multi_turn" and bench.num_turns == 3
    assert all(t.gold_mask is not None for d in bench for t in d.turns)
    assert bench.dialogues[0].turns[0].ann_ids == [10]
    call = fake.calls[0]
    assert call["repo_id"] == hub.RELEASED_TEST_DATA and call["repo_type"] == "dataset"
    assert call["revision"] == "abc123"  # pinned
    assert "refcocoplus_multi_turn.json" in call["allow_patterns"]
    assert not any("refcocog" in p for p in call["allow_patterns"])  # only the named file comes down


def test_fetch_falls_back_to_the_cache_offline_and_says_how_when_it_cannot(tmp_path):
    from regiondial_bench.bench.hub import fetch_released

    folder = _released_folder(tmp_path / "repo")
    offline = FakeHub(folder, online=False)
    files = fetch_released(configs=["refcocog"], client=offline)
    assert set(files) == {"refcocog"}
    assert offline.calls[-1]["local_files_only"] is True
    with pytest.raises(FileNotFoundError, match="regiondial bench fetch"):
        fetch_released(configs=["refcocog"], client=FakeHub(folder, online=False, cached=False))
    with pytest.raises(FileNotFoundError, match="no refcocoz_multi_turn.json"):
        fetch_released(configs=["refcocoz"], client=FakeHub(folder))


def test_bench_fetch_command_prints_the_files(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from regiondial_bench.bench import hub
    from regiondial_bench.cli import main

    fake = FakeHub(_released_folder(tmp_path / "repo"))
    monkeypatch.setattr(hub, "HubClient", lambda: fake)
    result = CliRunner().invoke(main, ["bench", "fetch", "--revision", "v1.0"])
    assert result.exit_code == 0, result.output
    assert "refcocoplus: " in result.stdout and "refcocog: " in result.stdout
    assert fake.calls[0]["revision"] == "v1.0"


def test_a_local_released_folder_takes_a_config(tmp_path):
    from regiondial_bench import api

    folder = _released_folder(tmp_path / "released")
    assert api.load_bench(f"{folder}:refcocog").name == "refcocog_multi_turn"
    with pytest.raises(ValueError, match="name one"):
        api.load_bench(str(folder))
    with pytest.raises(ValueError, match="no config 'nope'"):
        api.load_bench(f"{folder}:nope")
    single = _released_folder(tmp_path / "one", configs=("refcocoplus",))
    assert api.load_bench(str(single)).name == "refcocoplus_multi_turn"


def test_build_folder_lists_and_chooses_splits(two_builds):
    import json

    from click.testing import CliRunner

    from regiondial_bench import api
    from regiondial_bench.cli import main

    plus = two_builds[0]
    notices = []
    test = api.load_bench(str(plus), notice=notices.append)
    assert test.root == plus / "test" and "loading 'test'" in notices[0]
    assert api.load_bench(f"{plus}:val").root == plus / "val"
    assert api.load_bench(f"{plus}:refcocoplus_multiturn:val").root == plus / "val"
    with pytest.raises(ValueError, match="no split 'train'"):
        api.load_bench(f"{plus}:train")
    info = CliRunner().invoke(main, ["bench", "info", str(plus)])
    assert info.exit_code == 0, info.output
    assert "splits test (" in info.stdout and "val (" in info.stdout
    as_json = json.loads(CliRunner().invoke(main, ["bench", "info", f"{plus}:val", "--json"]).stdout)
    assert as_json["content_hash"] == api.load_bench(f"{plus}:val").content_hash
    run = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--bench", str(plus), "--out",
                                    str(plus.parent / "run-plus"), "--no-progress", "--bootstrap", "0"])
    assert run.exit_code == 0, run.output
    assert "loading 'test'" in run.stderr


def test_an_export_folder_takes_config_and_split(two_builds, tmp_path):
    from regiondial_bench import api

    folder = publish(two_builds, "me/regiondial", dry_run=tmp_path / "export")
    val = api.load_bench(f"{folder}:refcocoplus_multiturn:val")
    assert val.content_hash == Bench.load(two_builds[0] / "val").content_hash
    g = api.load_bench(f"{folder}:refcocog_multiturn")
    assert g.content_hash == Bench.load(two_builds[1] / "test").content_hash


@pytest.mark.parametrize("spec", ["x" * 5000, "a\x00b", "y" * 300 + ":config", "no/such/dir:cfg:split"])
def test_a_hostile_bench_spec_is_a_clear_error(spec):
    from regiondial_bench import api

    with pytest.raises(FileNotFoundError, match="no bench at"):
        api.load_bench(spec)


# --------------------------------------------------------------------------------------------
# bench fetch: test files, their images and the training data; hostile Hub caches and specs
# --------------------------------------------------------------------------------------------


class Repos:
    """A fake Hub client serving one local folder per dataset repo (the real repos' layouts)."""

    def __init__(self, **folders):
        self.hubs = {repo.replace("__", "/"): FakeHub(folder) for repo, folder in folders.items()}

    def snapshot_download(self, **kwargs):
        return self.hubs[kwargs["repo_id"]].snapshot_download(**kwargs)


def _pretend_cached(tmp_path, monkeypatch, repo):
    """What a real fetch leaves in the Hub cache, so evaluate's fail-fast Hub check passes offline."""
    cache = tmp_path / "hf-hub-cache"
    (cache / f"datasets--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)).mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the Hub is unreachable


def test_bench_fetch_brings_files_images_and_training_data_and_evaluate_needs_no_images(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from regiondial_bench.bench import hub
    from regiondial_bench.cli import main
    from regiondial_bench.training.data import samples_from_released_json

    repos = Repos(lmsdss__regionreasoner_test_data=_released_folder(tmp_path / "test-repo"),
                  lmsdss__regionreasoner_data=_training_folder(tmp_path / "train-repo"))
    monkeypatch.setattr(hub, "HubClient", lambda: repos)
    runner = CliRunner()
    fetched = runner.invoke(main, ["bench", "fetch"])
    assert fetched.exit_code == 0, fetched.output
    for config in ("refcocoplus", "refcocog"):
        line = next(x for x in fetched.stdout.splitlines() if x.startswith(f"{config}: "))
        assert f"raw/{config}_multi_turn.json" in line and "(images: " in line
    patterns = repos.hubs[hub.RELEASED_TEST_DATA].calls[0]["allow_patterns"]
    assert "*/refcocoplus_test_multi_bbox_images/*" in patterns or "*/*_test_multi_bbox_images/*" in patterns

    training = runner.invoke(main, ["bench", "fetch", "--training", "--local-dir", str(tmp_path / "data")])
    assert training.exit_code == 0, training.output
    assert (tmp_path / "data" / "regionreasoner_train.json").is_file()
    samples = samples_from_released_json(tmp_path / "data" / "regionreasoner_train.json", image_root=tmp_path / "data")
    assert Path(samples[0]["image"]).is_file()  # where the trainer's configs read it: data/ + image paths

    _pretend_cached(tmp_path, monkeypatch, hub.RELEASED_TEST_DATA)
    out = tmp_path / "run"
    run = runner.invoke(main, ["evaluate", "--model", "whole-image", "--bench", f"hf:{hub.RELEASED_TEST_DATA}:refcocog",
                               "--out", str(out), "--no-progress", "--bootstrap", "0"])
    assert run.exit_code == 0, run.output
    assert "images: " in run.stderr and "refcocog_test_multi_bbox_images" in run.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["regions"][0]["box"] == [0.0, 0.0, 5.0, 5.0] for r in records)
    # with --no-images only the question files come down
    bare = runner.invoke(main, ["bench", "fetch", "--no-images", "--config", "refcocoplus"])
    assert bare.exit_code == 0 and "(no images)" in bare.stdout
    assert not any("images" in p for p in repos.hubs[hub.RELEASED_TEST_DATA].calls[-1]["allow_patterns"])


def test_a_local_copy_of_the_released_repo_finds_its_images(tmp_path):
    from regiondial_bench import api

    folder = _released_folder(tmp_path / "copy")
    notices = []
    bench = api.load_bench(f"{folder}:refcocog", notice=notices.append)
    assert len(bench.image_files) == 2 and any("refcocog_test_multi_bbox_images" in n for n in notices)
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert not api.load_bench(f"{folder}:refcocog", images=other).image_files  # --images wins


def _offline_hub(monkeypatch):
    """The real huggingface_hub.snapshot_download, with the network down (so it reads the cache)."""
    import huggingface_hub

    real = huggingface_hub.snapshot_download

    def offline(**kwargs):
        if not kwargs.get("local_files_only"):
            raise ConnectionError("no network")
        return real(**kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)


def _hub_cache_entry(cache, repo, ref_content, files):
    """A Hub cache in huggingface_hub's layout: refs/main holding ``ref_content``; ``files`` written
    under snapshots/<commit>/ or, for a forged ref, wherever it points."""
    storage = cache / f"datasets--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(ref_content)
    (storage / "snapshots").mkdir()
    target = storage / "snapshots" / ref_content
    for rel, text in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    return storage


def test_a_cached_snapshot_serves_offline_but_a_forged_ref_is_refused(tmp_path, monkeypatch):
    from regiondial_bench.bench.hub import RELEASED_TEST_DATA, HubCacheError, HubClient, fetch_released

    _offline_hub(monkeypatch)
    good = tmp_path / "good-cache"
    _hub_cache_entry(good, RELEASED_TEST_DATA, "a" * 40, {"raw/refcocoplus_multi_turn.json": "[]"})
    files = fetch_released(revision="main", configs=["refcocoplus"], cache_dir=good, client=HubClient())
    assert files["refcocoplus"].parent.parent.name == "a" * 40
    forged = tmp_path / "forged-cache"
    outside = tmp_path / "outside"
    (outside / "raw").mkdir(parents=True)
    (outside / "raw" / "refcocoplus_multi_turn.json").write_text("[]")
    _hub_cache_entry(forged, RELEASED_TEST_DATA, "../../../outside", {})
    with pytest.raises(HubCacheError, match="not one of its snapshot folders"):
        fetch_released(revision="main", configs=["refcocoplus"], cache_dir=forged, client=HubClient())


@pytest.mark.parametrize("revision", ["../../outside", "/abs", "main/../../x", "a b", "x" * 300])
def test_a_revision_that_is_not_a_name_is_refused(tmp_path, revision):
    from click.testing import CliRunner

    from regiondial_bench.bench.hub import fetch_released
    from regiondial_bench.cli import main

    fake = FakeHub(_released_folder(tmp_path / "repo", images=False))
    with pytest.raises(ValueError, match="not a branch, tag or commit"):
        fetch_released(revision=revision, client=fake)
    assert not fake.calls
    result = CliRunner().invoke(main, ["bench", "fetch", "--revision", revision])
    assert result.exit_code == 1 and "Traceback" not in result.output and len(result.output.splitlines()) == 1


def test_hostile_hub_specs_and_offline_misses_are_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache"),
           "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache")}
    for spec in ("hf:someone/not-cached", "hf:lmsdss/regionreasoner_test_data:refcocoplus", "hf:" + "a" * 10_000,
                 "hf:" + "a" * 50 + "/" + "b" * 9_950 + ":cfg"):
        proc = subprocess.run([sys.executable, "-m", "regiondial_bench.cli", "bench", "info", spec],
                              capture_output=True, text=True, env=env, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-2000:]
        assert len(lines[0]) < 500 and "Traceback" not in proc.stderr


def _broken_export(tmp_path, how):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from regiondial_bench.bench.specs import SAMPLE_BENCH

    folder = publish([SAMPLE_BENCH], "me/regiondial", dry_run=tmp_path / f"export-{how}")
    shard = next((folder / "sample").glob("*.parquet"))
    if how == "yaml":
        card = (folder / "README.md").read_text()
        (folder / "README.md").write_text(card.replace("configs:", "configs: [unclosed", 1))
    elif how == "schema":
        pq.write_table(pa.table({"foo": [1, 2], "bar": ["x", "y"]}), shard)
    else:  # turns: null
        table = pq.read_table(shard)
        index = table.schema.get_field_index("turns")
        nulls = pa.nulls(table.num_rows, type=table.schema.field("turns").type)
        pq.write_table(table.set_column(index, table.schema.field("turns"), nulls), shard)
    return folder


@pytest.mark.parametrize(("how", "message"), [("yaml", "cannot read the dataset"),
                                              ("schema", "is not an exported bench: it lacks the columns"),
                                              ("null_turns", "row 0 of sample/test is not an exported dialogue")])
def test_a_broken_export_is_one_clear_error(tmp_path, how, message):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    folder = _broken_export(tmp_path, how)
    result = CliRunner().invoke(main, ["bench", "info", str(folder)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output, result.output


def test_an_unreachable_hub_is_one_error_line_even_when_the_library_writes_several(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from regiondial_bench.bench import hub
    from regiondial_bench.cli import main

    class Unreachable:
        def snapshot_download(self, **kwargs):
            raise OSError("Got: ConnectError: [Errno -2] Name or service not known\nAn error happened while "
                          "trying to locate the files on the Hub.\n\nPlease check your internet connection.")

    monkeypatch.setattr(hub, "HubClient", Unreachable)
    for args in (["bench", "fetch"], ["bench", "fetch", "--training"]):
        result = CliRunner().invoke(main, args)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert result.exit_code == 1 and len(errors) == 1, result.output
        assert "Name or service not known An error happened" in errors[0] and "regiondial bench fetch" in errors[0]
        assert len(result.stderr.splitlines()) == 2  # "fetching ..." and the error
