"""Procedural scenes written in the ``refer`` layout, so tests and the sample bench exercise the
same reader and builder as the real RefCOCO+/RefCOCOg data.

:func:`write_synthetic_refer` draws images of coloured shapes (circles, squares, triangles ...)
and writes, under ``root``::

    <root>/<dataset>/refs(<split_by>).p
    <root>/<dataset>/instances.json
    <root>/images/mscoco/images/train2014/COCO_train2014_<id:012d>.jpg

Every object has a category, a polygon (drawn into the image exactly as annotated), a COCO xywh
box and two to four referring expressions whose colour, size and position words are true for
the scene. Output depends only on the arguments (seeded), so the same call writes the same files.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .refer import DEFAULT_IMAGE_SUBDIR

CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "circle"),
    (2, "square"),
    (3, "triangle"),
    (4, "star"),
    (5, "diamond"),
    (6, "hexagon"),
    (7, "rectangle"),
)
COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (210, 40, 40)),
    ("green", (40, 160, 60)),
    ("blue", (40, 70, 200)),
    ("yellow", (235, 205, 40)),
    ("purple", (130, 50, 160)),
    ("orange", (240, 130, 30)),
    ("black", (25, 25, 25)),
    ("white", (250, 250, 250)),
)
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((200, 215, 225), (225, 215, 195), (190, 205, 190), (215, 200, 215))
FILE_NAME = "COCO_train2014_{:012d}.jpg"


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Attributes:
        images_per_split: How many images each split gets, e.g. ``{"testA": 750, "testB": 750}``.
        objects_per_image: Relative weights of the number of referred objects per image,
            ``{count: weight}``; the mean of the default is about 2.5, as in RefCOCO+ testA/testB.
        image_size: ``(width, height)`` of every image.
        seed: Seeds every random choice.
        first_image_id: The id of the first image; ids are consecutive.
        jpeg_quality: JPEG quality of the written images.
    """

    images_per_split: Mapping[str, int]
    objects_per_image: Mapping[int, float] = None  # type: ignore[assignment]
    image_size: tuple[int, int] = (640, 480)
    seed: int = 0
    first_image_id: int = 1
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if self.objects_per_image is None:
            object.__setattr__(self, "objects_per_image", {1: 4, 2: 6, 3: 4, 4: 2, 5: 1, 6: 0.5})
        if not self.images_per_split or any(n < 0 for n in self.images_per_split.values()):
            raise ValueError(f"images_per_split must map split names to counts >= 0, got {dict(self.images_per_split)}")
        if any(k < 1 or w < 0 for k, w in self.objects_per_image.items()) or not any(self.objects_per_image.values()):
            raise ValueError(f"objects_per_image must map counts >= 1 to weights >= 0, got {dict(self.objects_per_image)}")
        if min(self.image_size) < 64:
            raise ValueError(f"image_size {self.image_size} is too small (minimum 64x64)")


def _shape_polygon(kind: str, cx: float, cy: float, r: float, aspect: float, turn: float) -> list[tuple[float, float]]:
    if kind == "circle":
        return [(cx + r * math.cos(2 * math.pi * i / 24), cy + r * math.sin(2 * math.pi * i / 24)) for i in range(24)]
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "rectangle":
        w, h = r * aspect, r / aspect
        return [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)]
    if kind == "triangle":
        return [(cx + r * math.cos(turn + 2 * math.pi * i / 3), cy + r * math.sin(turn + 2 * math.pi * i / 3)) for i in range(3)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if kind == "hexagon":
        return [(cx + r * math.cos(math.pi * i / 3), cy + r * math.sin(math.pi * i / 3)) for i in range(6)]
    if kind == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else 0.45 * r
            angle = -math.pi / 2 + math.pi * i / 5
            pts.append((cx + rad * math.cos(angle), cy + rad * math.sin(angle)))
        return pts
    raise ValueError(f"unknown shape {kind!r}")


def _bounds(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _scene(rng: random.Random, count: int, width: int, height: int) -> list[dict]:
    """Place ``count`` shapes; occasionally one sits inside a larger one (for ``inside``)."""
    objects: list[dict] = []
    short = min(width, height)
    for _ in range(count):
        kind_id, kind = rng.choice(CATEGORIES)
        color_name, rgb = rng.choice(COLORS)
        aspect = rng.uniform(1.4, 2.0)
        turn = rng.uniform(0, 2 * math.pi)
        host = [o for o in objects if o["r"] > 0.12 * short and o["kind"] in ("square", "circle", "hexagon")]
        placed = None
        if host and rng.random() < 0.25:
            outer = rng.choice(host)
            r = outer["r"] * rng.uniform(0.25, 0.4)
            poly = _shape_polygon(kind, outer["cx"], outer["cy"], r, min(aspect, 1.4), turn)
            placed = (outer["cx"], outer["cy"], r, poly)
        else:
            for _attempt in range(40):
                r = rng.uniform(0.06, 0.2) * short
                margin = r * 2.1
                if 2 * margin >= width or 2 * margin >= height:
                    continue
                cx = rng.uniform(margin, width - margin)
                cy = rng.uniform(margin, height - margin)
                poly = _shape_polygon(kind, cx, cy, r, aspect, turn)
                box = _bounds(poly)
                if all(_overlap(box, o["box"]) < 0.15 for o in objects):
                    placed = (cx, cy, r, poly)
                    break
        if placed is None:
            continue
        cx, cy, r, poly = placed
        poly = [(min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)) for x, y in poly]
        poly = [(round(x, 2), round(y, 2)) for x, y in poly]
        objects.append(
            {"kind": kind, "kind_id": kind_id, "color": color_name, "rgb": rgb, "cx": cx, "cy": cy, "r": r,
             "poly": poly, "box": _bounds(poly)}
        )
    return objects


def _expressions(rng: random.Random, obj: dict, objects: list[dict], width: int, height: int) -> list[str]:
    """Two to four expressions whose words hold for the scene."""
    kind, color = obj["kind"], obj["color"]
    same_kind = [o for o in objects if o["kind"] == kind]
    areas = sorted(o["r"] for o in same_kind)
    size = "big" if obj["r"] >= areas[len(areas) // 2] else "small"
    horizontal = "left" if obj["cx"] < width / 3 else "right" if obj["cx"] > 2 * width / 3 else "middle"
    vertical = "top" if obj["cy"] < height / 2 else "bottom"
    candidates = [
        f"{color} {kind}",
        f"{size} {color} {kind}" if len(same_kind) > 1 else f"{kind}",
        f"{kind} in the middle" if horizontal == "middle" else f"{kind} on the {horizontal}",
        f"{color} {kind} at the {vertical}",
        f"{color} one on the {vertical} {horizontal}" if horizontal != "middle" else f"{color} one in the {vertical} middle",
    ]
    rng.shuffle(candidates)
    return candidates[: rng.randint(2, 4)]


def _draw(objects: list[dict], width: int, height: int, background: tuple[int, int, int], quality: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(height * 0.72), width, height], fill=tuple(max(0, c - 25) for c in background))
    for obj in sorted(objects, key=lambda o: -o["r"]):  # large first, so nested shapes stay visible
        draw.polygon(obj["poly"], fill=obj["rgb"], outline=(60, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def write_synthetic_refer(
    root: str | Path,
    spec: SyntheticSpec,
    dataset: str = "refcoco+",
    split_by: str = "unc",
    progress: bool = False,
) -> Path:
    """Generate scenes and write them in the refer layout under ``root``.

    Args:
        root: Output data root (created).
        spec: What to generate.
        dataset: Dataset folder name under ``root``.
        split_by: Written as ``refs(<split_by>).p``.
        progress: Show a progress bar.

    Returns:
        ``root`` as a Path.
    """
    from tqdm import tqdm

    root = Path(root)
    ds_dir = root / dataset
    img_dir = root / DEFAULT_IMAGE_SUBDIR
    ds_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    width, height = spec.image_size
    counts = sorted(spec.objects_per_image)
    weights = [spec.objects_per_image[c] for c in counts]

    images, annotations, refs = [], [], []
    image_id, ann_id, ref_id, sent_id = spec.first_image_id, 1, 1, 1
    plan = [(split, i) for split, n in spec.images_per_split.items() for i in range(n)]
    for split, _ in tqdm(plan, desc="synthetic scenes", unit="img", disable=not progress):
        rng = random.Random(f"regiondial-synthetic:{spec.seed}:{image_id}")
        count = rng.choices(counts, weights)[0]
        objects = _scene(rng, count, width, height)
        file_name = FILE_NAME.format(image_id)
        background = rng.choice(BACKGROUNDS)
        (img_dir / file_name).write_bytes(_draw(objects, width, height, background, spec.jpeg_quality))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            flat = [c for point in obj["poly"] for c in point]
            annotations.append(
                {"id": ann_id, "image_id": image_id, "category_id": obj["kind_id"],
                 "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "segmentation": [flat],
                 "area": round(_polygon_area(obj["poly"]), 2), "iscrowd": 0}
            )
            sentences = []
            for text in _expressions(rng, obj, objects, width, height):
                sentences.append({"sent_id": sent_id, "sent": text, "raw": text.capitalize(), "tokens": text.split()})
                sent_id += 1
            refs.append(
                {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": obj["kind_id"],
                 "split": split, "file_name": f"{file_name[:-4]}_{ann_id}.jpg",
                 "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences}
            )
            ann_id += 1
            ref_id += 1
        image_id += 1

    instances = {
        "info": {"description": "regiondial-bench synthetic scenes", "seed": spec.seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES],
    }
    (ds_dir / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
    with open(ds_dir / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f, protocol=4)
    return root


def _polygon_area(points: list[tuple[float, float]]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True))) / 2
