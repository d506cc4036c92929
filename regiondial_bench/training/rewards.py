"""RegionReasoner's GRPO rewards as plain TRL reward functions, under two documented profiles.

Each component is a function of one response, the gold ``solution`` (a JSON string list of
``{"bbox_2d": [...], "point_2d": [...]}``) and the ``problem`` (the question with its inline
``bbox=[x1,y1,x2,y2]`` reference, as in the released training data):

===============  ==========================================  ===================================
component        ``released`` (the released code)            ``paper`` (the paper's description)
===============  ==========================================  ===================================
tags             F_tags, per-tag scores, order not checked,  same scores, scene→focus→think→answer
                 [0, 2.3]                                    order enforced, normalised to [0, 2]
answer_format    F_json, strict ``json.loads``, [0, 2]       same
reference        R_ref: exact-integer citations, ×0.5 on     tolerance-matched citations (bare
                 any hallucinated box, keyword bonus,        lists too), −η·share hallucinated
                 [0, 2]                                      (the answer's own box excluded),
                                                             clipped to [0, 2]; 1 when no
                                                             reference is required
accuracy         R_acc: Hungarian over inclusive-pixel       same matching with the evaluator's
                 IoU>0.5 / L1<10 / point<30 hits on numpy    IoU and the shared tolerant parser,
                 arrays (non-numbers pay 0), [0, 3]          scaled to [0, 2]
non_repeat       R_nonrep, 0 after two repeated sentences    same
consistency      R_cons: first-10-keyword substring test     spaCy noun-lemma overlap in [0, 1]
                 + word-list logic bonus, [0, 2.08]          + spatial prior capped at 1, [0, 2]
total            plain sum                                   R_base + α·R_ref + β·R_cons
===============  ==========================================  ===================================

Where each rule comes from (UPSTREAM.md section 5 for ``released``, the paper for ``paper``) and
which reading was taken where the paper is ambiguous: ``docs/rewards.md``.

Use them in TRL as ``GRPOTrainer(reward_funcs=reward_functions("released"), args=GRPOConfig(
reward_weights=RewardProfile("released").weights()))``; the dataset needs ``problem`` and
``solution`` columns (see :mod:`regiondial_bench.training.data`). TRL logs each component under
``rewards/<name>/mean``.

Tag extraction reuses :func:`regiondial_bench.protocol.extract_tags` and IoU reuses
:mod:`regiondial_bench.geometry`, the same code the evaluator uses.

>>> problem = "Find the dog to the left of bbox=[300,100,400,250]."
>>> solution = '[{"bbox_2d": [120, 140, 260, 300], "point_2d": [190, 220]}]'
>>> score_released("<answer>not json</answer>", solution, problem)["total"]  # F_tags 0.5 + R_nonrep 1
1.5
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..geometry import box_iou
from ..protocol import TAGS, extract_tags, parse_answer

COMPONENTS: tuple[str, ...] = ("tags", "answer_format", "reference", "accuracy", "non_repeat", "consistency")
"""Reward components, in the order :func:`reward_functions` returns them."""

PROFILES: tuple[str, ...] = ("released", "paper")

RewardFunc = Callable[..., list[float]]

# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardProfile:
    """Which reward definition to use, and the paper profile's weights.

    Args:
        name: ``"released"`` (the released code, a plain sum) or ``"paper"``.
        alpha: Weight of R_ref in the paper's total ``R_base + α·R_ref + β·R_cons``.
        beta: Weight of R_cons in the paper's total.
        citation_tolerance: Paper profile: a box cited in ``<think>`` matches a reference when
            every coordinate is within this many pixels (training frame).
        hallucination_penalty: Paper profile: η, subtracted times the share of cited boxes that
            match no reference.

    >>> RewardProfile("paper", alpha=0.5).weights()
    [1.0, 1.0, 0.5, 1.0, 1.0, 1.0]
    >>> RewardProfile("released", beta=2.0)
    Traceback (most recent call last):
    ...
    ValueError: the 'released' reward profile is a plain sum (alpha = beta = 1); got alpha=1.0, beta=2.0. Set profile 'paper' to weight R_ref and R_cons.
    """

    name: str = "released"
    alpha: float = 1.0
    beta: float = 1.0
    citation_tolerance: float = 10.0
    hallucination_penalty: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(f"unknown reward profile {self.name!r}; choose one of {list(PROFILES)}")
        for field_name in ("alpha", "beta", "citation_tolerance", "hallucination_penalty"):
            value = getattr(self, field_name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"reward profile {field_name} must be a finite number >= 0, got {value!r}")
        if self.name == "released" and (self.alpha != 1.0 or self.beta != 1.0):
            raise ValueError(
                "the 'released' reward profile is a plain sum (alpha = beta = 1); got "
                f"alpha={self.alpha}, beta={self.beta}. Set profile 'paper' to weight R_ref and R_cons."
            )

    def weights(self) -> list[float]:
        """Per-component weights aligned with :data:`COMPONENTS` (for ``GRPOConfig.reward_weights``)."""
        by_name = {"reference": float(self.alpha), "consistency": float(self.beta)}
        return [by_name.get(name, 1.0) for name in COMPONENTS]


def as_profile(profile: str | RewardProfile) -> RewardProfile:
    """Accept a profile name or a :class:`RewardProfile`."""
    return profile if isinstance(profile, RewardProfile) else RewardProfile(str(profile))


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------

_NUM = r"\s*(\d+)\s*"
_PROBLEM_REF_RE = re.compile(rf"bbox\s*=\s*\[{_NUM},{_NUM},{_NUM},{_NUM}\]")
_THINK_REF_RE = re.compile(rf"bbox\s*=?\s*\[{_NUM},{_NUM},{_NUM},{_NUM}\]")
_FLOAT = r"\s*(-?\d+(?:\.\d+)?)\s*"
_ANY_BOX_RE = re.compile(rf"\[{_FLOAT},{_FLOAT},{_FLOAT},{_FLOAT}\]")
_LOOSE_TAG_RE = re.compile(r"</?(scene|focus|think|answer)>", re.IGNORECASE)

REFERENCE_KEYWORDS = ("bbox", "bounding box", "bbox=", "coordinates", "bounding box=")
SCENE_WORDS = ("scene", "image", "picture", "photo", "shows", "contains", "visible", "appears", "located")
STOP_WORDS = frozenset(
    (
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "in",
        "on",
        "at",
        "to",
        "for",
        "of",
        "with",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "will",
        "would",
        "could",
        "should",
    )
)
LOGIC_GROUPS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.5, ("above", "below", "left", "right", "inside", "overlapping", "near", "touching", "next to")),
    (0.3, ("compare", "similar", "different", "match", "closest", "best", "choose", "select", "find")),
    (0.2, ("locate", "identify", "position", "area", "region", "corner", "center", "coordinates")),
    (0.2, ("reference", "bbox", "guidance", "based on", "according to")),
)
"""The released logic bonus: (bonus, cue words) per group (spatial, comparison, location, reference); up to 1.2."""

PAPER_MAX = 2.0
"""The paper normalises every reward component to [0, PAPER_MAX]."""

PAPER_PRIOR_GROUPS = LOGIC_GROUPS[:3]
"""The paper's spatial prior: the spatial, comparative and localisation cue groups (0.5 + 0.3 + 0.2 = 1);
the released fourth group (reference words, +0.2) is left to R_ref, which already pays for citing."""


def completion_text(completion: Any) -> str:
    """The assistant text of a TRL completion (a string or a list of chat messages).

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}])
    'a'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple) and completion:
        message = completion[-1]
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    if completion is None or completion == []:
        return ""
    raise TypeError(f"cannot read text from a completion of type {type(completion).__name__}")


def released_tags(response: str) -> dict[str, str | None]:
    """The four tag blocks as the released reward reads them (case-sensitive tags).

    The shared :func:`~regiondial_bench.protocol.extract_tags` matches tags case-insensitively;
    the released regexes do not, so when the text holds a tag spelled in other case the
    case-sensitive search decides (that is the only place the two can differ).

    >>> released_tags("<THINK>a</THINK><answer>[]</answer>")["think"] is None
    True
    """
    found = extract_tags(response)
    if any(m.group(0) != m.group(0).lower() for m in _LOOSE_TAG_RE.finditer(response)):
        for tag in TAGS:
            block = _tag_block(response, tag)
            found[tag] = block[0] if block else None
    return found


def _tag_block(text: str, tag: str, start: int = 0) -> tuple[str, int] | None:
    """The first case-sensitive ``<tag>…</tag>`` block at or after ``start``: (stripped content, end).

    The released regex ``<tag>\\s*(.*?)\\s*</tag>`` (DOTALL) matches exactly this: the first opening
    tag that has a closing tag after it is the first opening tag (a later one cannot do better),
    and the lazy group ends at the first closing tag. Two ``str.find`` calls keep it linear
    where the regex rescans the text from every unclosed opening tag.

    >>> _tag_block("<think> a </think> <think>b</think>", "think")
    ('a', 18)
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    begin = text.find(opening, start)
    if begin < 0:
        return None
    end = text.find(closing, begin + len(opening))
    if end < 0:
        return None
    return text[begin + len(opening) : end].strip(), end + len(closing)


def problem_references(problem: str | None) -> set[tuple[int, int, int, int]]:
    """Integer ``bbox=[x1,y1,x2,y2]`` references in the lowercased problem (released rule).

    Raises ``ValueError`` for a coordinate longer than ``int()`` accepts (4300 digits), as the
    released code's ``int()`` does.

    >>> sorted(problem_references("Find the cat near BBOX = [ 1, 2 ,3,4 ]."))
    [(1, 2, 3, 4)]
    """
    if not problem:
        return set()
    return _int_boxes(_PROBLEM_REF_RE, problem.lower())


def has_problem_reference(problem: str | None) -> bool:
    """Whether the problem holds a ``bbox=[int,int,int,int]`` reference (F_tags' "reference present").

    >>> has_problem_reference("near bbox = [1, 2, 3, 4]"), has_problem_reference("near [1, 2, 3, 4]")
    (True, False)
    """
    return bool(problem) and _PROBLEM_REF_RE.search(problem.lower()) is not None


def _int_boxes(pattern: re.Pattern, text: str) -> set[tuple[int, int, int, int]]:
    return {tuple(int(v) for v in m.groups()) for m in pattern.finditer(text)}


def _all_boxes(text: str) -> list[tuple[float, float, float, float]]:
    return [tuple(float(v) for v in m.groups()) for m in _ANY_BOX_RE.finditer(text)]


def _strict_answer(answer: str | None) -> Any:
    """``json.loads`` of the answer, as released: fences, trailing text or quotes fail (None)."""
    # The shared parse_answer is deliberately tolerant (fences, prose, Python literals); the
    # released F_json/R_acc are strict, and the reward must not pay for what they rejected.
    if answer is None:
        return None
    try:
        return json.loads(answer)
    except (ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------------------------
# Components (pure functions of one response)
# --------------------------------------------------------------------------------------------


def tags_reward(response: str, problem: str | None, *, enforce_order: bool = False) -> float:
    """F_tags: per-tag format score, at most 2.3 with a reference in the problem, 2.0 without.

    With ``enforce_order`` (paper profile) a tag counts only if it opens after the previous
    counted tag in the order scene → focus → think → answer.

    >>> r = "<scene>The image shows a park.</scene><think>the dog is left of it</think><answer>[1]</answer>"
    >>> tags_reward(r, "find the dog")  # no reference: focus absent earns 0.5
    2.0
    >>> reversed_tags = "<answer>[1]</answer><think>the dog is left</think>"
    >>> tags_reward(reversed_tags, "x"), tags_reward(reversed_tags, "x", enforce_order=True)
    (1.5, 1.0)
    """
    tags = released_tags(response)
    if enforce_order:
        tags = _in_order(response, tags)
    has_reference = has_problem_reference(problem) or (enforce_order and bool(_all_boxes(problem or "")))
    score = 0.0
    scene = tags["scene"]
    if scene is not None:
        if len(scene.strip()) < 10:
            score += 0.2
        else:
            score += 0.5 if any(w in scene.lower() for w in SCENE_WORDS) else 0.3
    think = tags["think"]
    if think is not None:
        score += 0.2 if len(think.strip()) < 10 else 0.5
    answer = tags["answer"]
    if answer is not None:
        score += 0.1 if len(answer.strip()) < 3 else 0.5
    focus = tags["focus"]
    if has_reference:
        if focus:
            focus_score = 0.2 if len(focus.split()) < 5 else 0.8
            problem_tokens = set((problem or "").lower().split())
            focus_tokens = set(focus.lower().split())
            if problem_tokens and len(problem_tokens & focus_tokens) / len(problem_tokens) > 0.6:
                focus_score = 0.0  # anti-copy: the focus repeats the question
            score += focus_score
    elif focus is None:
        score += 0.5
    return round(score, 10)


def tags_reward_paper(response: str, problem: str | None) -> float:
    """F_tags of the paper profile: order enforced, normalised to [0, 2].

    The released per-tag scores reach 2.3 with a reference and 2.0 without; the paper normalises
    each component to [0, 2], so the order-enforced score is divided by the maximum the problem
    allows and doubled.

    >>> full = ("<scene>The image shows a park.</scene><focus>a brown dog sits on the grass</focus>"
    ...         "<think>the cat is left of it</think><answer>[1]</answer>")
    >>> tags_reward(full, "find the cat left of bbox=[1,2,3,4]"), tags_reward_paper(full, "find the cat left of bbox=[1,2,3,4]")
    (2.3, 2.0)
    """
    has_reference = has_problem_reference(problem) or bool(_all_boxes(problem or ""))
    maximum = 2.3 if has_reference else 2.0
    return round(tags_reward(response, problem, enforce_order=True) * PAPER_MAX / maximum, 10)


def _in_order(response: str, tags: dict[str, str | None]) -> dict[str, str | None]:
    cursor = 0
    kept: dict[str, str | None] = {}
    for tag in TAGS:
        block = _tag_block(response, tag, cursor) if tags[tag] is not None else None
        if block is None:
            kept[tag] = None
            continue
        kept[tag], cursor = block
    return kept


def answer_format_reward(response: str) -> float:
    """F_json: per-item [bbox_2d has 4] + [point_2d has 2], averaged over items; strict JSON.

    >>> answer_format_reward('<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"bbox_2d": [1]}]</answer>')
    1.0
    >>> answer_format_reward('<answer>```json\\n[]\\n```</answer>')
    0.0
    """
    data = _strict_answer(released_tags(response)["answer"])
    if not isinstance(data, list) or not data:
        return 0.0
    total = 0.0
    for item in data:
        if not isinstance(item, dict):
            return 0.0  # the released code raises on a non-object item and returns 0
        box, point = item.get("bbox_2d"), item.get("point_2d")
        total += float(isinstance(box, list) and len(box) == 4)
        total += float(isinstance(point, list) and len(point) == 2)
    return total / len(data)


def reference_reward(response: str, problem: str | None) -> float:
    """R_ref as released: keyword bonus + share of exactly cited references, ×0.5 on hallucinations.

    >>> p = "Find the cup right of bbox=[300,100,400,250]."
    >>> reference_reward("<think>The bbox=[300,100,400,250] holds a plate.</think>", p)
    2.0
    >>> reference_reward("<think>The bbox=[300,100,400,250] and bbox=[1,2,3,4].</think>", p)
    0.75
    >>> reference_reward("<think>no mention</think>", "Find the cup.")
    1.0
    """
    think = released_tags(response)["think"]
    if think is None or problem is None:
        return 0.0
    try:
        references = problem_references(problem)
        if not references:
            return 1.0
        think = think.lower()
        cited = _int_boxes(_THINK_REF_RE, think)
    except ValueError:  # a coordinate past int()'s digit limit: the released try returns its reward so far, 0
        return 0.0
    reward = 1.0 if any(k in think for k in REFERENCE_KEYWORDS) else 0.0
    if cited:
        correct = cited & references
        if correct:
            reward += len(correct) / len(cited)
        if cited - references:
            reward *= 0.5
    return reward


def reference_reward_paper(
    response: str, problem: str | None, *, tolerance: float = 10.0, penalty: float = 0.5
) -> float:
    """R_ref as the paper describes it: tolerance matching, subtractive η, clipped to [0, 2].

    References are read from the problem in either surface form (``bbox=[...]`` or a bare
    ``[x1, y1, x2, y2]`` as evaluation inserts); cited boxes likewise, decimals allowed. A problem
    without a reference box, or no problem at all, requires no reference: R_ref = 1. A box cited in
    ``<think>`` that is the response's own answer (within ``tolerance`` of a box in ``<answer>``)
    and matches no reference is the target being stated, not a hallucinated reference: it is
    left out of the citation count.

    >>> p = "Find the cup right of [300, 100, 400, 250]."
    >>> reference_reward_paper("<think>The bbox [302,99,401,250] holds a plate.</think>", p)
    2.0
    >>> reference_reward_paper("<think>bbox=[300,100,400,250] and bbox=[1,2,3,4]</think>", p)
    1.25
    >>> reference_reward_paper("<think>right of bbox=[300,100,400,250] is the cup at [420,90,500,260]</think>"
    ...                        '<answer>[{"bbox_2d": [420, 90, 500, 260]}]</answer>', p)  # the target box
    2.0
    >>> reference_reward_paper("no tags at all", "Find the cup."), reference_reward_paper("", None)
    (1.0, 1.0)
    """
    references = _all_boxes(problem.lower()) if problem else []
    if not references:
        return 1.0  # the paper: R_ref = 1 whenever no reference box is required, whatever the response
    think = released_tags(response)["think"]
    if think is None:
        return 0.0
    think = think.lower()
    cited = _all_boxes(think)
    reward = 1.0 if cited or any(k in think for k in REFERENCE_KEYWORDS) else 0.0

    def near(box: Sequence[float], others: Sequence[Sequence[float]]) -> bool:
        return any(_max_abs_diff(box, other) <= tolerance for other in others)

    answer_boxes = [region.box for region in parse_answer(response, require_answer_tag=True).regions]
    matched = sum(1 for box in cited if near(box, references))
    counted = sum(1 for box in cited if near(box, references) or not near(box, answer_boxes))
    if counted:
        reward += matched / counted - penalty * (counted - matched) / counted
    return min(2.0, max(0.0, reward))


def _gold_items(solution: str | Sequence[dict] | None) -> list[dict] | None:
    if solution is None:
        return None
    data = solution
    if isinstance(solution, str):
        try:
            data = json.loads(solution)
        except (ValueError, RecursionError):
            return None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return None
    return data


def _mean_l1(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / 4


def _max_abs_diff(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _hungarian_score(hits: Any) -> float:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(3.0 - hits)
    return float(hits[rows, cols].sum()) / max(hits.shape)


def _released_hits(predicted: list, gold: list) -> Any:
    """The (M, N) hit matrix of UPSTREAM.md section 5.4, computed on numpy arrays built straight
    from the JSON values, as the released code does.

    Building the arrays is where the released reward decides what a coordinate is: quoted
    numbers make a string array, ``null`` an object array and all-``true``/``false`` boxes a
    boolean array, and the arithmetic below raises on each (the caller then pays 0), while a
    ``true`` among integers is upcast to 1. Raises whatever numpy raises.
    """
    import numpy as np

    pred_boxes = np.array([item["bbox_2d"] for item in predicted])
    pred_points = np.array([item["point_2d"] for item in predicted])
    gold_boxes = np.array([item["bbox_2d"] for item in gold])
    gold_points = np.array([item["point_2d"] for item in gold])
    for name, array, width in (("box", pred_boxes, 4), ("point", pred_points, 2),
                               ("box", gold_boxes, 4), ("point", gold_points, 2)):
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"a {name} array of shape {array.shape}")
    p, g = pred_boxes[:, None, :], gold_boxes[None, :, :]  # (M, 1, 4) against (1, N, 4)
    with np.errstate(all="ignore"):  # numpy warns (and yields inf/nan) where the released code did too
        inter_w = np.maximum(0, np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]) + 1)
        inter_h = np.maximum(0, np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]) + 1)
        inter = inter_w * inter_h
        area_p = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
        area_g = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
        iou = inter / (area_p + area_g - inter)
        mean_l1 = np.mean(np.abs(p - g), axis=2)
        offset = pred_points[:, None, :] - gold_points[None, :, :]
        distance = np.sqrt(np.sum(offset * offset, axis=2))
    x, y = pred_points[:, 0], pred_points[:, 1]
    inside = (x >= pred_boxes[:, 0]) & (x <= pred_boxes[:, 2]) & (y >= pred_boxes[:, 1]) & (y <= pred_boxes[:, 3])
    return (iou > 0.5).astype(float) + (mean_l1 < 10).astype(float) + ((distance < 30) & inside[:, None]).astype(float)


def accuracy_reward(response: str, solution: str | Sequence[dict] | None) -> float:
    """R_acc as released: Hungarian matching over IoU>0.5 / mean-L1<10 / point<30 hits, in [0, 3].

    Every predicted item needs both ``bbox_2d`` and ``point_2d`` (else 0); IoU uses inclusive
    integer pixels. Coordinates must be JSON numbers: quoted numbers, ``null`` or boxes of
    ``true``/``false`` pay 0, as the released numpy code fails on them (see :func:`_released_hits`).

    >>> gold = '[{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}]'
    >>> accuracy_reward('<answer>[{"bbox_2d": [12, 10, 110, 112], "point_2d": [65, 60]}]</answer>', gold)
    3.0
    >>> accuracy_reward('<answer>[{"bbox_2d": [12, 10, 110, 112], "point_2d": [65, 60]}, '
    ...                 '{"bbox_2d": [300, 300, 400, 400], "point_2d": [350, 350]}]</answer>', gold)
    1.5
    >>> accuracy_reward('<answer>[{"bbox_2d": ["10", "10", "110", "110"], "point_2d": [60, 60]}]</answer>', gold)
    0.0
    """
    predicted = _strict_answer(released_tags(response)["answer"])
    gold = _gold_items(solution)
    if not isinstance(predicted, list) or not predicted or not gold:
        return 0.0
    try:
        hits = _released_hits(predicted[:120], gold[:120])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return 0.0  # the released code swallows every error and scores 0
    return _hungarian_score(hits)


def accuracy_reward_paper(response: str, solution: str | Sequence[dict] | None) -> float:
    """R_acc with the evaluator's IoU and the shared tolerant parser, normalised to [0, 2] (paper profile).

    The released matching (IoU > 0.5, mean L1 < 10, point < 30 px inside its own box; Hungarian;
    divided by max(M, N)) gives [0, 3]; the paper normalises every component to [0, 2], so it is
    scaled by 2/3. Items without a point keep their IoU and L1 hits; format is rewarded
    separately by F_json.

    >>> gold = '[{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}]'
    >>> accuracy_reward_paper('<answer>```json\\n[{"bbox_2d": [12, 10, 110, 112]}]\\n```</answer>', gold)  # 2 of 3 hits
    1.3333333333
    """
    import numpy as np

    parsed = parse_answer(response, require_answer_tag=True, max_regions=120)
    gold = _gold_items(solution)
    if not parsed.regions or not gold:
        return 0.0
    gold_pairs = []
    for item in gold[:120]:
        if isinstance(item, dict) and isinstance(item.get("bbox_2d"), list) and len(item["bbox_2d"]) == 4:
            point = item.get("point_2d")
            gold_pairs.append(
                (item["bbox_2d"], point if isinstance(point, list) and len(point) == 2 else None)
            )
    if not gold_pairs:
        return 0.0
    hits = np.zeros((len(parsed.regions), len(gold_pairs)))
    for i, region in enumerate(parsed.regions):
        pb, pp = region.box, region.point
        inside = pp is not None and pb[0] <= pp[0] <= pb[2] and pb[1] <= pp[1] <= pb[3]
        for j, (gb, gp) in enumerate(gold_pairs):
            hits[i, j] = (
                float(box_iou(pb, gb) > 0.5)
                + float(_mean_l1(pb, gb) < 10)
                + float(inside and gp is not None and math.dist(pp, gp) < 30)
            )
    return round(_hungarian_score(hits) * PAPER_MAX / 3.0, 10)


def non_repeat_reward(response: str) -> float:
    """R_nonrep: 1, or 0 once two sentences (split on ``.``) repeat earlier ones.

    >>> non_repeat_reward("A cat. A cat. A dog.")
    1.0
    >>> non_repeat_reward("A cat. A cat. A cat.")
    0.0
    """
    seen: set[str] = set()
    repeats = 0
    for sentence in (s.strip() for s in response.split(".")):
        if not sentence:
            continue
        if sentence in seen:
            repeats += 1
            if repeats >= 2:
                return 0.0
        seen.add(sentence)
    return 1.0


def _released_keywords(text: str) -> list[str]:
    words = re.findall(r"\b\w+\b", text.lower())
    return [w for w in words if len(w) > 2 and w not in STOP_WORDS][:10]


def _logic_bonus(contains: Callable[[str], bool]) -> float:
    return sum(bonus for bonus, words in LOGIC_GROUPS if any(contains(w) for w in words))


def consistency_reward(response: str, problem: str | None) -> float:
    """R_cons as released: 1.0·scene coverage + 0.6·focus coverage + 0.4·logic bonus, ≤ 2.08.

    Coverage is the share of the first ten scene (focus) keywords, duplicates kept, that occur
    as substrings of the lowercased think.

    >>> consistency_reward("<scene>a dog on grass</scene><think>the dog is near</think><answer>[]</answer>", "q")
    1.3
    """
    tags = released_tags(response)
    if not problem or tags["scene"] is None or tags["answer"] is None or tags["think"] is None:
        return 0.0
    think = tags["think"].lower()

    def coverage(text: str) -> float:
        words = _released_keywords(text)
        return min(sum(1 for w in words if w in think) / max(len(words), 1), 1.0)

    scene_cov = coverage(tags["scene"])
    focus_cov = coverage(tags["focus"]) if tags["focus"] else 1.0
    return round(1.0 * scene_cov + 0.6 * focus_cov + 0.4 * _logic_bonus(lambda w: w in think), 10)


def consistency_reward_paper(response: str, problem: str | None) -> float:
    """R_cons of the paper profile: keyword overlap in [0, 1] plus a spatial prior capped at 1.

    *Overlap*: the share of the distinct noun lemmas (spaCy) of ``<scene>`` found among the
    think's lemmas (S) and likewise for ``<focus>`` (Fo; 1 when the focus is empty or absent),
    weighted 1.0 : 0.6 as released and normalised: (S + 0.6·Fo) / 1.6. Lemmas, not substrings:
    "man" no longer matches "woman". *Prior*: the spatial (+0.5), comparative (+0.3) and
    localisation (+0.2) cue groups of :data:`PAPER_PRIOR_GROUPS` found in the think (as lemmas,
    multi-word cues as phrases), capped at 1. The total lies in [0, 2].
    """
    from .keywords import keywords, lemma_set

    tags = released_tags(response)
    if not problem or tags["scene"] is None or tags["answer"] is None or tags["think"] is None:
        return 0.0
    think_text = tags["think"].lower()
    think_lemmas = lemma_set(think_text) | set(re.findall(r"\b\w+\b", think_text))

    def coverage(text: str) -> float:
        words = keywords(text)
        return sum(1 for w in words if w in think_lemmas) / len(words) if words else 0.0

    scene_cov = coverage(tags["scene"])
    focus_cov = coverage(tags["focus"]) if tags["focus"] else 1.0
    overlap = (1.0 * scene_cov + 0.6 * focus_cov) / 1.6

    def contains(word: str) -> bool:
        if " " in word:
            return re.search(rf"\b{re.escape(word)}\b", think_text) is not None
        return word in think_lemmas

    prior = min(1.0, sum(bonus for bonus, words in PAPER_PRIOR_GROUPS if any(contains(w) for w in words)))
    return round(overlap + prior, 10)


# --------------------------------------------------------------------------------------------
# Totals and TRL entry points
# --------------------------------------------------------------------------------------------


def _component(name: str, profile: RewardProfile, response: str, solution: Any, problem: str | None) -> float:
    paper = profile.name == "paper"
    if name == "tags":
        return tags_reward_paper(response, problem) if paper else tags_reward(response, problem)
    if name == "answer_format":
        return answer_format_reward(response)
    if name == "reference":
        if paper:
            return reference_reward_paper(
                response, problem, tolerance=profile.citation_tolerance, penalty=profile.hallucination_penalty
            )
        return reference_reward(response, problem)
    if name == "accuracy":
        return accuracy_reward_paper(response, solution) if paper else accuracy_reward(response, solution)
    if name == "non_repeat":
        return non_repeat_reward(response)
    if name == "consistency":
        return consistency_reward_paper(response, problem) if paper else consistency_reward(response, problem)
    raise ValueError(f"unknown reward component {name!r}; choose from {list(COMPONENTS)}")


def score(
    response: str,
    solution: str | Sequence[dict] | None,
    problem: str | None,
    profile: str | RewardProfile = "released",
) -> dict[str, float]:
    """Every component and the weighted ``total`` for one response.

    Args:
        response: The model's decoded text.
        solution: Gold answer, a JSON string list of ``{"bbox_2d", "point_2d"}`` objects.
        problem: The question with its inline ``bbox=[...]`` reference.
        profile: ``"released"``, ``"paper"`` or a :class:`RewardProfile`.

    Returns:
        ``{component: value, ..., "total": weighted sum}``.
    """
    profile = as_profile(profile)
    if not isinstance(response, str):
        raise TypeError(f"response must be text, got {type(response).__name__}")
    parts = {name: float(_component(name, profile, response, solution, problem)) for name in COMPONENTS}
    parts["total"] = round(sum(w * parts[n] for w, n in zip(profile.weights(), COMPONENTS, strict=True)), 10)
    return parts


def score_released(response: str, solution: str, problem: str) -> dict[str, float]:
    """The released reward of one response: keys ``tags``, ``answer_format``, ``reference``,
    ``accuracy``, ``non_repeat``, ``consistency`` and ``total`` (their plain sum).

    >>> s = score_released("<think>x</think>", '[{"bbox_2d": [0, 0, 9, 9], "point_2d": [4, 4]}]', "find it")
    >>> s["tags"], s["reference"], s["non_repeat"], s["total"]
    (0.7, 1.0, 1.0, 2.7)
    """
    return score(response, solution, problem, "released")


def reward_functions(profile: str | RewardProfile = "released") -> list[RewardFunc]:
    """One TRL reward function per component, in :data:`COMPONENTS` order.

    Each has the signature ``(prompts, completions, *, problem, solution, **columns) ->
    list[float]`` and is named after its component (TRL logs ``rewards/<name>/mean``). Weight
    them with ``GRPOConfig(reward_weights=profile.weights())``.

    >>> fns = reward_functions("released")
    >>> [f.__name__ for f in fns][:3]
    ['tags', 'answer_format', 'reference']
    >>> fns[4](prompts=["p"], completions=[[{"role": "assistant", "content": "a. a. a."}]],
    ...        problem=["p"], solution=["[]"])
    [0.0]
    """
    profile = as_profile(profile)
    return [_trl_function(name, profile) for name in COMPONENTS]


def _trl_function(name: str, profile: RewardProfile) -> RewardFunc:
    def reward(prompts: list, completions: list, **columns: Any) -> list[float]:
        missing = [c for c in ("problem", "solution") if c not in columns]
        if missing:
            raise KeyError(
                f"reward {name!r} needs the dataset columns {missing}; build the dataset with "
                "regiondial_bench.training.data (it writes 'problem' and 'solution')"
            )
        problems, solutions = columns["problem"], columns["solution"]
        return [
            float(_component(name, profile, completion_text(c), s, p))
            for c, s, p in zip(completions, solutions, problems, strict=True)
        ]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"{profile.name} profile: the {name!r} reward component (TRL reward function)."
    return reward


__all__ = [
    "COMPONENTS",
    "PROFILES",
    "RewardProfile",
    "accuracy_reward",
    "accuracy_reward_paper",
    "answer_format_reward",
    "completion_text",
    "consistency_reward",
    "consistency_reward_paper",
    "non_repeat_reward",
    "reference_reward",
    "reference_reward_paper",
    "reward_functions",
    "score",
    "score_released",
    "tags_reward",
    "tags_reward_paper",
]
