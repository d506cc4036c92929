"""``regiondial build``: rebuild RegionDial-Bench from RefCOCO+/RefCOCOg (refer layout, HF copy) or
synthetic scenes."""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import click


def _parse_splits(values: tuple[str, ...]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {}
    for value in values:
        out, sep, sources = value.partition("=")
        if not sep or not out or not sources:
            raise click.BadParameter(f"expected OUT=SRC[+SRC...], e.g. test=testA+testB; got {value!r}", param_hint="--split")
        splits[out] = [s for s in sources.replace(",", "+").split("+") if s]
    return splits


@click.command("build")
@click.option("--source", type=click.Choice(["refer", "hf", "synthetic"]), required=True, help="where the referring expressions come from")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="output folder (one bench folder per split + build.json)")
@click.option("--dataset", type=click.Choice(["refcoco+", "refcocog", "refcoco"]), default="refcoco+", show_default=True)
@click.option("--split-by", help="refer splitBy [default: unc for refcoco/refcoco+, umd for refcocog]")
@click.option("--refer-root", type=click.Path(path_type=Path), help="refer data root (holds <dataset>/refs(<split-by>).p and instances.json)")
@click.option("--image-dir", type=click.Path(path_type=Path), help="COCO train2014 images [default: <refer-root>/images/mscoco/images/train2014]")
@click.option("--hf-repo", help="Hugging Face copy, e.g. jxu124/refcocoplus or lmms-lab/RefCOCOplus (or a local folder with --hf-layout)")
@click.option("--hf-layout", type=click.Choice(["jxu124", "lmms"]), help="layout of an --hf-repo that is not a known copy")
@click.option("--synthetic-images", type=int, default=40, show_default=True, help="synthetic images per source split")
@click.option("--synthetic-root", type=click.Path(file_okay=False, path_type=Path), help="keep the synthetic refer layout here [default: temporary]")
@click.option("--split", "split_specs", multiple=True, metavar="OUT=SRC[+SRC]", help="output split from source splits, repeatable [default: test=testA+testB, val=val for refcoco+; test=test, val=val for refcocog]")
@click.option("--train/--no-train", default=False, show_default=True, help="also build train=train with train_samples.json for the trainer")
@click.option("--paper-size", is_flag=True, help="target the paper's test size (RefCOCO+ 715 images / 2355 rounds, RefCOCOg 1580 / 4405)")
@click.option("--target-images", type=int, help="dialogues in the test split")
@click.option("--target-rounds", type=int, help="rounds (turns) in the test split")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-rounds", type=int, default=2, show_default=True)
@click.option("--max-rounds", type=int, default=12, show_default=True)
@click.option("--reference-rate", type=float, default=0.8, show_default=True, help="share of rounds after the first that refer back")
@click.option("--style", type=click.Choice(["imperative", "expression"]), help="question style [default: imperative for refcoco+, expression for refcocog]")
@click.option("--name", help="bench name [default: the benchmark name, e.g. refcocoplus_multiturn]")
@click.option("--images", "image_mode", type=click.Choice(["copy", "symlink"]), default="copy", show_default=True)
@click.option("--no-progress", is_flag=True, help="no progress bars")
def command(source, out, dataset, split_by, refer_root, image_dir, hf_repo, hf_layout, synthetic_images, synthetic_root,
            split_specs, train, paper_size, target_images, target_rounds, seed, min_rounds, max_rounds, reference_rate,
            style, name, image_mode, no_progress) -> None:
    """Build a benchmark into OUT/<split>/ (manifest.json, dialogues.jsonl, images/, official_questions.json).

    \b
    Examples:
      regiondial build --source refer --refer-root data/refer --dataset refcoco+ --out benches/refcocoplus --paper-size
      regiondial build --source hf --hf-repo lmms-lab/RefCOCOplus --dataset refcoco+ --out benches/refcocoplus
      regiondial build --source synthetic --synthetic-images 100 --out /tmp/synthetic-bench
    """
    from ..bench.build import (
        BENCHMARK_NAMES,
        DEFAULT_SPLIT_BY,
        DEFAULT_SPLITS,
        DEFAULT_STYLE,
        PAPER_TARGETS,
        BuildConfig,
        build_benchmark,
    )
    from ..bench.sources import SourceLayoutError, SyntheticSpec, read_hf, read_refer, write_synthetic_refer

    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    splits = _parse_splits(split_specs) if split_specs else {k: list(v) for k, v in DEFAULT_SPLITS[dataset].items()}
    if train:
        splits["train"] = ["train"]
    if paper_size:
        if dataset not in PAPER_TARGETS:
            raise click.UsageError(f"--paper-size: the paper has no {dataset} bench")
        target_images, target_rounds = PAPER_TARGETS[dataset]
    benchmark = BENCHMARK_NAMES[dataset]
    try:
        configs = {
            split: BuildConfig(
                name=name or benchmark,
                seed=seed,
                min_rounds=min_rounds,
                max_rounds=max_rounds,
                target_images=target_images if split == "test" else None,
                target_rounds=target_rounds if split == "test" else None,
                reference_rate=reference_rate,
                question_style=style or DEFAULT_STYLE[dataset],
            )
            for split in splits
        }
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    started = time.perf_counter()
    tmp = None
    try:
        if source == "refer":
            if refer_root is None:
                raise click.UsageError("--source refer needs --refer-root")
            reader = partial(read_refer, refer_root, dataset, split_by, image_dir=image_dir)
            info = {"reader": "refer", "dataset": dataset, "split_by": split_by, "refer_root": str(refer_root)}
        elif source == "hf":
            if hf_repo is None:
                raise click.UsageError("--source hf needs --hf-repo")
            reader = partial(read_hf, hf_repo, image_dir=image_dir, layout=hf_layout, dataset=dataset)
            info = {"reader": "hf", "dataset": dataset, "hf_repo": hf_repo}
        else:
            if synthetic_root is None:
                tmp = tempfile.TemporaryDirectory(prefix="regiondial-synthetic-")
                synthetic_root = Path(tmp.name)
            needed = sorted({s for sources in splits.values() for s in sources})
            spec = SyntheticSpec(images_per_split={s: synthetic_images for s in needed}, seed=seed)
            write_synthetic_refer(synthetic_root, spec, dataset=dataset, split_by=split_by, progress=not no_progress)
            reader = partial(read_refer, synthetic_root, dataset, split_by)
            info = {"reader": "synthetic", "dataset": dataset, "split_by": split_by,
                    "synthetic": {"seed": seed, "images_per_split": synthetic_images}}
        result = build_benchmark(reader, out, benchmark=benchmark, splits=splits, configs=configs,
                                 source_info=info, images=image_mode, progress=not no_progress)
    except (SourceLayoutError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if tmp is not None:
            tmp.cleanup()
    for split, meta in result["splits"].items():
        click.echo(f"{split}: {meta['dialogues']} dialogues, {meta['turns']} turns, {meta['content_hash']}")
        click.echo(f"  turns per round: {meta['turns_per_round']}")
        for issue in meta["issues"]:
            click.echo(f"  warning: {issue}")
    click.echo(f"wrote {out} in {time.perf_counter() - started:.1f} s")
