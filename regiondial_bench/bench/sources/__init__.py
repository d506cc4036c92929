"""Readers of referring-expression sources, all yielding :class:`SourceImage` records.

- :func:`read_refer`: the ``refer`` layout (``refs(<splitBy>).p`` + ``instances.json`` + COCO images);
- :func:`read_hf`: Hugging Face copies through ``datasets.load_dataset``;
- :func:`write_synthetic_refer`: procedural scenes written in the refer layout (read back with
  :func:`read_refer`).

``sources.upstream`` imports the official RegionDial question files (a bench, not records).
"""

from .hf import HF_COPIES, HFCopy, read_hf
from .records import SourceImage, SourceObject, xywh_to_xyxy
from .refer import SourceLayoutError, read_refer, split_matches
from .synthetic import SyntheticSpec, write_synthetic_refer

__all__ = [
    "HF_COPIES",
    "HFCopy",
    "SourceImage",
    "SourceLayoutError",
    "SourceObject",
    "SyntheticSpec",
    "read_hf",
    "read_refer",
    "split_matches",
    "write_synthetic_refer",
    "xywh_to_xyxy",
]
