"""The ``sam2`` mask producer: SAM2 prompted with each predicted box and its points.

It uses transformers' SAM2 implementation (``Sam2Model``) with the upstream checkpoint
``facebook/sam2-hiera-large`` (SAM 2.0) by default. Prompting and merging follow the upstream
evaluation: the original-resolution image is encoded once; every predicted object is prompted
with its box plus its point(s) (label 1); of the three candidate masks the one with the highest
predicted IoU is kept; all objects of a turn are OR-ed into one mask.

Images are encoded in batches of ``batch_size``; all objects of an image are decoded in one call.
Preprocessing (square resize to the checkpoint's input size, ImageNet normalisation) is done here
with PIL/numpy from the checkpoint's ``preprocessor_config.json`` so it also works where
torchvision (which transformers' SAM2 image processor needs) is absent.

Options for objects without a point (``missing_point``):

* ``box-only`` (default): prompt that object with its box alone.
* ``empty-turn``: upstream parity; any object without a point leaves the whole turn's mask empty.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..adapters.base import AdapterError, ImageInput
from ..adapters.registry import require
from ..geometry import mask_to_rle
from ..schema import RLE, Region
from .segment import MaskProducer, register_mask_producer

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD_LABEL = -10  # SAM2's "no point here" label (zero embedding)


def _preprocessor_settings(model: str) -> dict[str, Any]:
    """Input size and normalisation from the checkpoint's ``preprocessor_config.json``."""
    local = Path(model) / "preprocessor_config.json"
    try:
        if local.is_file():
            path = local
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "preprocessor_config.json"))
        config = json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001  (offline or a checkpoint without the file)
        logger.info("no preprocessor_config.json for %s (%s); using SAM2 defaults", model, exc)
        config = {}
    size = config.get("size") or {}
    return {
        "height": int(size.get("height", 1024)),
        "width": int(size.get("width", 1024)),
        "mean": tuple(config.get("image_mean", IMAGENET_MEAN)),
        "std": tuple(config.get("image_std", IMAGENET_STD)),
    }


@register_mask_producer("sam2")
class Sam2MaskProducer(MaskProducer):
    """SAM2 masks from predicted regions (boxes + points).

    Args:
        model: Hub id or local folder of a transformers SAM2 checkpoint.
        device: ``auto`` (CUDA if present), ``cuda``, ``cpu``.
        dtype: ``bfloat16``, ``float16`` or ``float32``; default bf16 on GPU (faster; masks can
            differ from fp32 at the edges), float32 on CPU. Upstream's RegionReasoner, VisionReasoner
            and Qwen evaluation paths run SAM2 in fp32 (no autocast), so their parity configs set
            ``float32``; only Seg-Zero's own scripts autocast it to bf16 (UPSTREAM.md 4).
        batch_size: Images encoded per forward pass.
        prompt: ``box+points`` (reasoning models) or ``box`` (Qwen2.5-VL zero-shot, upstream).
        missing_point: ``box-only`` or ``empty-turn`` (upstream parity), see the module docstring.
        multimask: Take the best of SAM2's three candidates (upstream) or the single-mask output.
    """

    def __init__(
        self,
        model: str = "facebook/sam2-hiera-large",
        device: str | None = "auto",
        dtype: str | None = None,
        batch_size: int = 8,
        prompt: str = "box+points",
        missing_point: str = "box-only",
        multimask: bool = True,
    ) -> None:
        torch = require("torch", "hf")
        require("transformers", "hf")
        from transformers import Sam2Model

        if prompt not in ("box+points", "box"):
            raise AdapterError(f"sam2 prompt must be 'box+points' or 'box', got {prompt!r}")
        if missing_point not in ("box-only", "empty-turn"):
            raise AdapterError(f"sam2 missing_point must be 'box-only' or 'empty-turn', got {missing_point!r}")
        if batch_size < 1:
            raise AdapterError(f"sam2 batch_size must be >= 1, got {batch_size}")
        self.model_name = model
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device in (None, "auto") else device
        name = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        self.dtype = getattr(torch, name, None)
        if not isinstance(self.dtype, torch.dtype):
            raise AdapterError(f"unknown dtype {name!r} for sam2")
        self.batch_size = batch_size
        self.prompt = prompt
        self.missing_point = missing_point
        self.multimask = multimask
        self.settings = _preprocessor_settings(model)
        try:
            self.model = Sam2Model.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
        except OSError as exc:
            raise AdapterError(f"cannot load SAM2 checkpoint {model!r}: {exc}") from exc

    # ------------------------------------------------------------------ helpers

    def pixel_values(self, images: Sequence[Any]) -> Any:
        """Square-resize (bilinear), rescale to [0, 1] and normalise a list of PIL images."""
        import torch
        from PIL import Image

        h, w = self.settings["height"], self.settings["width"]
        mean = np.asarray(self.settings["mean"], dtype=np.float32)
        std = np.asarray(self.settings["std"], dtype=np.float32)
        arrays = [
            (np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0 - mean) / std
            for img in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return batch.to(self.device, self.dtype)

    def prompts(self, regions: Sequence[Region], size: tuple[int, int]) -> tuple[Any, Any, Any] | None:
        """Boxes ``(1, N, 4)``, points ``(1, N, P, 2)`` and labels ``(1, N, P)`` in model-input pixels.

        Returns None when the turn's mask must stay empty (``missing_point='empty-turn'``).
        """
        import torch

        width, height = size
        sx, sy = self.settings["width"] / width, self.settings["height"] / height
        point_lists = []
        for region in regions:
            pts = [region.point, *region.extra_points] if region.point is not None else list(region.extra_points)
            if self.prompt == "box":
                pts = []
            elif not pts and self.missing_point == "empty-turn":
                return None
            point_lists.append(pts)
        boxes = torch.tensor([[[r.box[0] * sx, r.box[1] * sy, r.box[2] * sx, r.box[3] * sy] for r in regions]],
                             dtype=torch.float32)
        most = max((len(p) for p in point_lists), default=0)
        if most == 0:
            return boxes, None, None
        coords = torch.zeros(1, len(regions), most, 2)
        labels = torch.full((1, len(regions), most), PAD_LABEL, dtype=torch.int64)
        for i, pts in enumerate(point_lists):
            for j, (x, y) in enumerate(pts):
                coords[0, i, j] = torch.tensor([x * sx, y * sy])
                labels[0, i, j] = 1
        return boxes, coords, labels

    # ------------------------------------------------------------------ producer

    def masks(self, items: Sequence[tuple[ImageInput, Sequence[Region]]]) -> list[RLE | None]:
        import torch

        out: list[RLE | None] = [None] * len(items)
        todo = [i for i, (_, regions) in enumerate(items) if regions]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            images = [items[i][0].load() for i in chunk]
            with torch.inference_mode():
                embeddings = self.model.get_image_embeddings(self.pixel_values(images))
                for k, i in enumerate(chunk):
                    out[i] = self._decode(images[k].size, items[i][1], [level[k : k + 1] for level in embeddings])
        return out

    def _decode(self, size: tuple[int, int], regions: Sequence[Region], embeddings: list[Any]) -> RLE | None:
        import torch
        import torch.nn.functional as F

        prompts = self.prompts(regions, size)
        if prompts is None:
            return None
        boxes, coords, labels = (None if t is None else t.to(self.device) for t in prompts)
        if coords is not None:
            coords = coords.to(self.dtype)
        result = self.model(
            image_embeddings=embeddings,
            input_boxes=boxes.to(self.dtype),
            input_points=coords,
            input_labels=labels,
            multimask_output=self.multimask,
        )
        masks = result.pred_masks[0]  # (objects, candidates, h, w) low-res logits
        best = result.iou_scores[0].argmax(dim=-1)  # (objects,)
        chosen = masks[torch.arange(masks.shape[0]), best]  # (objects, h, w)
        width, height = size
        full = F.interpolate(chosen[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)
        merged = (full[:, 0] > 0).any(dim=0).cpu().numpy()
        return mask_to_rle(merged)

    def config(self) -> dict[str, Any]:
        return {
            "name": "sam2",
            "model": self.model_name,
            "dtype": str(self.dtype),
            "prompt": self.prompt,
            "missing_point": self.missing_point,
            "multimask": self.multimask,
            "input_size": [self.settings["width"], self.settings["height"]],
        }
