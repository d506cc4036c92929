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

QWEN_GROUNDING_TEMPLATE_UPSTREAM = (
    "\n"
    "            " + QWEN_GROUNDING_TEMPLATE + "\n"
    "            "
)
"""The same prompt exactly as the upstream baseline sends it (``prompt_variant: upstream``, the
parity config): ``qwen_vl.py`` writes it as a triple-quoted string inside ``__init__``'s ``if``
branch, so it opens with a newline and 12 spaces and ends with a newline and 12 spaces."""

# ---------------------------------------------------------------- current model families (UPSTREAM.md 3.4b)

QWEN3_VL_GROUNDING_TEMPLATE = (
    'Locate every object that matches the description "{question}" in the image. '
    "Report bbox coordinates in JSON format."
)
"""Qwen3-VL (Instruct and Thinking): the RefCOCO grounding prompt its authors use (QwenLM/Qwen3-VL#1721);
boxes come back as a fenced JSON list of ``{"bbox_2d": [...], "label": ...}`` in 0-1000 of the image."""

INTERNVL_GROUNDING_TEMPLATE = (
    "Please provide the bounding box coordinate of the region this sentence describes: <ref>{question}</ref>"
)
"""InternVL3.5: the prompt of InternVL's own RefCOCO evaluation
(``OpenGVLab/InternVL: internvl_chat/eval/refcoco/evaluate_grounding.py``); the answer is
``[[x1, y1, x2, y2]]`` (optionally in ``<ref>..</ref><box>..</box>``), normalised to 0-1000."""

_HOSTED_ASK = (
    'Locate "{question}" in the image. Answer with JSON only: a list with one object '
    '{"bbox_2d": [x1, y1, x2, y2]} per matching object, where (x1, y1) is the top-left and (x2, y2) the '
    "bottom-right corner of its box"
)
_HOSTED_SAME_FRAME = " Boxes mentioned in the question use the same coordinates."

HOSTED_PIXELS_TEMPLATE = (
    _HOSTED_ASK + ", in integer pixels of this {width}x{height} image (x to the right, y down from the "
    "top-left corner)." + _HOSTED_SAME_FRAME
)
"""Hosted chat models through ``openai`` (preset ``hosted-pixels``): absolute pixels of the image
as sent (the original), whose size the prompt states."""

HOSTED_NORM_1000_TEMPLATE = (
    _HOSTED_ASK + ", each coordinate an integer from 0 to 1000 relative to the image (x as a share of its "
    "width, y of its height; 0 is the left or top edge, 1000 the right or bottom edge)." + _HOSTED_SAME_FRAME
)
"""Hosted chat models through ``openai`` (preset ``hosted-norm-1000``): coordinates relative to the
image in 0-1000, which no server-side resize can change."""
