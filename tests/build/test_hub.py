"""Export, dry-run layout, publish (with a fake Hub) and loading back."""

from __future__ import annotations

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


def _released_folder(root, configs=("refcocoplus", "refcocog")):
    """A folder in the released layout (testdata/<config>_multi_turn.json, dense masks)."""
    import json

    (root / "testdata").mkdir(parents=True)
    for k, config in enumerate(configs):
        turns = [
            {"question": f"Find the {config} cat.", "bboxes": [[1, 1, 4, 4]], "ann_ids": [10 + k],
             "masks": [[[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]]},
            {"question": "Find the one left of the <box>{context_bbox}</box>.", "bboxes": [[0, 0, 2, 5]],
             "context_from_turn": 0, "ann_ids": [20 + k], "masks": [[[1, 1, 0, 0, 0]] * 5]},
        ]
        (root / "testdata" / f"{config}_multi_turn.json").write_text(
            json.dumps([{"image_id": 42 + k, "conversational_turns": turns}]))
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

        out = self.folder.parent / f"snapshot-{len(self.calls)}"
        for file in self.folder.rglob("*"):
            rel = file.relative_to(self.folder).as_posix()
            if file.is_file() and any(fnmatch.fnmatch(rel, p) for p in kwargs["allow_patterns"]):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, out / rel)
        return str(out)


def test_hf_spec_fetches_the_released_file_with_masks(tmp_path, monkeypatch):
    from regiondial_bench import api
    from regiondial_bench.bench import hub

    fake = FakeHub(_released_folder(tmp_path / "repo"))
    monkeypatch.setattr(hub, "HubClient", lambda: fake)
    bench = api.load_bench("hf:lmsdss/regionreasoner_test_data@abc123:refcocoplus")
    assert bench.name == "refcocoplus_multi_turn" and bench.num_turns == 2
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
