"""Every prompt text the project sends to a model, in one place (model-input data, not code).

The texts follow the upstream evaluation and training code as UPSTREAM.md section 3 records them.
The RegionReasoner evaluation and training templates share most of their lines; each line is
written once here and the two templates are assembled from them, so a correction reaches both.

>>> REGIONREASONER_TEMPLATE.splitlines()[1].endswith("use it as spatial guidance only.")
True
>>> REGIONREASONER_TRAINING_TEMPLATE.splitlines()[1].endswith("use it as spatial guidance.")
True
>>> REGIONREASONER_TEMPLATE.splitlines()[-1] == REGIONREASONER_TRAINING_TEMPLATE.splitlines()[-1]
True
"""

from __future__ import annotations

ANSWER_EXAMPLE = (
    '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
)
"""The fixed answer example of the RegionReasoner/VisionReasoner templates (it also fixes the schema)."""

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
"""Qwen2.5-VL's chat-template default, which the training prompt states explicitly."""

# ---------------------------------------------------------------- RegionReasoner (eval and training)

_RR_FIND = 'Please find "{question}" with bboxs and points.'
_RR_REFERENCE = ("If a reference bbox is provided (e.g., 'above/ below/ to the left of/ to the right of/ inside/ "
                 "overlapping with/ touching bbox=[x1,y1,x2,y2]'), use it as spatial guidance")
_RR_SCENE = "1) In <scene> </scene>, give a concise global scene description."
_RR_THINK = ("3) In <think> </think>, reason over the whole image by combining the global scene and the reference "
             "bbox relation. Explicitly state which spatial relation from the question you apply (e.g., 'target is "
             "above the reference'), and use it to constrain the search over the scene to locate the target "
             "object(s). If multiple candidates exist, compare them and pick the closest match.")
_RR_ANSWER = "4) In <answer> </answer>, output the bbox(es) and point(s) for the target object(s) in JSON."
_RR_ANSWER_FORMAT = "<answer>" + ANSWER_EXAMPLE + "</answer>"

REGIONREASONER_TEMPLATE = "\n".join([
    _RR_FIND,
    _RR_REFERENCE + " only.",
    "",
    _RR_SCENE,
    "2) If a reference bbox exists, in <focus> </focus> describe ONLY what is visible inside that bbox "
    "(do not output the final answer or target label here).",
    _RR_THINK,
    _RR_ANSWER,
    "",
    "Format:",
    "<scene> global scene description </scene>",
    "<focus> description of reference bbox content (if provided bbox=[x1,y1,x2,y2]) </focus>",
    "<think> reasoning that applies the spatial relation to the scene and narrows to the final target(s) </think>",
    _RR_ANSWER_FORMAT,
])
"""RegionReasoner's evaluation prompt (``DETECTION_TEMPLATE``, UPSTREAM.md 3.1)."""

REGIONREASONER_TRAINING_TEMPLATE = "\n".join([
    _RR_FIND,
    _RR_REFERENCE + ".",
    "",
    _RR_SCENE,
    "2) In <focus> </focus>, describe what is visible inside the reference bbox (if provided). "
    "(do not output the final answer or target label here).",
    _RR_THINK,
    _RR_ANSWER,
    "",
    "Format:",
    "<scene> global description of the image here </scene>",
    "<focus> description of reference bbox content here </focus>",
    "<think> thinking process here </think>",
    _RR_ANSWER_FORMAT,
])
"""RegionReasoner's training prompt (``train/verl/utils/rl_dataset.py``, UPSTREAM.md 3.1; exact
whitespace upstream unverified). Its system message is :data:`DEFAULT_SYSTEM_PROMPT`."""

# ---------------------------------------------------------------- baselines

VISIONREASONER_TEMPLATE = "".join([
    _RR_FIND,
    "Compare the difference between object(s) and find the most closely matched object(s).",
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format.",
    "i.e., <think> thinking process here </think>",
    _RR_ANSWER_FORMAT,
])
"""VisionReasoner-7B (UPSTREAM.md 3.2): the sentences are concatenated with no separator."""

SEGZERO_TEMPLATE = "".join([
    "Please find '{question}' with bbox and points.",
    "Compare the difference between objects and find the most closely matched one.",
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON "
    "format.",
    "i.e., <think> thinking process here </think>",
    "<answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>",
])
"""Seg-Zero-7B's old single-object template (UPSTREAM.md 3.3)."""

QWEN_GROUNDING_TEMPLATE = 'Locate "{question}", report the bboxes coordinates in JSON format.'
"""Qwen2.5-VL zero-shot, the upstream baseline path's prompt (UPSTREAM.md 3.4)."""

QWEN_SYSTEM_PROMPT = "You are a helpful assistant"
"""The system message of the upstream Qwen baseline path (no full stop, UPSTREAM.md 3.4)."""
