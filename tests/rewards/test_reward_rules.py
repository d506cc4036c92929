"""One table per reward rule (UPSTREAM.md section 5 for ``released``, docs/rewards.md for ``paper``).

Each row is an input and the value the rule gives it; a broken threshold, a dropped word, a
swapped weight or a lost cap changes some row. Boundary rows sit exactly on each threshold.
"""

from __future__ import annotations

import json
import random
import warnings

import pytest

from regiondial_bench.geometry import box_iou, box_iou_inclusive
from regiondial_bench.training.rewards import (
    COMPONENTS,
    LOGIC_GROUPS,
    PAPER_PRIOR_GROUPS,
    REFERENCE_KEYWORDS,
    SCENE_WORDS,
    RewardProfile,
    accuracy_reward,
    accuracy_reward_paper,
    answer_format_reward,
    completion_text,
    consistency_reward,
    consistency_reward_paper,
    non_repeat_reward,
    reference_reward,
    reference_reward_paper,
    released_tags,
    reward_functions,
    score,
    tags_reward,
    tags_reward_paper,
)

REF = "Find the dog left of bbox=[300,100,400,250]."
NO_REF = "Find the dog."
GOLD = [{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}]
GOLD_JSON = json.dumps(GOLD)


@pytest.fixture(autouse=True)
def _quiet_spacy_fallback():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="spaCy model")
        yield


def answer(items) -> str:
    return f"<answer>{json.dumps(items)}</answer>"


def item(box, point=(60, 60)):
    return {"bbox_2d": list(box), "point_2d": list(point)}


# --------------------------------------------------------------------------------------------
# F_tags (UPSTREAM.md 5.1)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<scene>123456789</scene>", 0.2),  # 9 characters: short
        ("<scene>1234567890</scene>", 0.3),  # 10 characters: not short, no scene word
        ("<scene>   12345678   </scene>", 0.2),  # stripped before counting
        ("<scene>a big IMAGE here</scene>", 0.5),  # scene words match lowercased
        ("<scene>a big house on a hill</scene>", 0.3),
        ("<think>123456789</think>", 0.2),
        ("<think>1234567890</think>", 0.5),
        ("<think>  12345678  </think>", 0.2),
        ("<answer>ab</answer>", 0.1),
        ("<answer>abc</answer>", 0.5),
        ("<answer>  a  </answer>", 0.1),
    ],
)
def test_tag_length_thresholds(text, expected):
    # the problem has no reference and there is no focus: focus earns its 0.5 on top
    assert tags_reward(text, NO_REF) == pytest.approx(expected + 0.5)


@pytest.mark.parametrize("word", SCENE_WORDS)
def test_every_scene_word_earns_the_scene_bonus(word):
    assert tags_reward(f"<scene>one {word} two three</scene>", NO_REF) == pytest.approx(0.5 + 0.5)


TEN_TOKENS = "a b c d e f g h i bbox=[1,2,3,4]"  # ten whitespace tokens, one reference


@pytest.mark.parametrize(
    ("focus", "expected"),
    [
        (None, 0.0),
        ("", 0.0),
        ("one two three four", 0.2),  # 4 whitespace tokens: short
        ("one two three four five", 0.8),
        # anti-copy: |problem tokens ∩ focus tokens| / |problem tokens| > 0.6 zeroes the focus
        ("a b c d e f x", 0.8),  # 6/10 = 0.6: kept
        ("a b c d e f g x", 0.0),  # 7/10
        ("A B C D E F G x", 0.0),  # compared lowercased
        ("a a a a a a a a", 0.8),  # token sets: 1/10
    ],
)
def test_focus_with_a_reference(focus, expected):
    text = "" if focus is None else f"<focus>{focus}</focus>"
    assert tags_reward(text, TEN_TOKENS) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("problem", "has_reference"),
    [
        ("near bbox=[1,2,3,4]", True),
        ("near BBOX = [ 1 , 2 , 3 , 4 ]", True),  # lowercased, spaces anywhere
        ("near bbox=[1.5,2,3,4]", False),  # decimals are no reference
        ("near bbox=[-1,2,3,4]", False),  # nor negatives
        ("near [1, 2, 3, 4]", False),  # the bare evaluation form is no reference for the released code
        ("", False),
        (None, False),
    ],
)
def test_reference_presence_switches_the_focus_rule(problem, has_reference):
    # with a reference a missing focus earns 0; without one it earns 0.5
    assert tags_reward("", problem) == (0.0 if has_reference else 0.5)


def test_tags_are_found_case_sensitively_and_linearly():
    assert released_tags("<THINK>abcdefghijk</THINK><think>x</think>")["think"] == "x"
    assert released_tags("<Scene>a</Scene>")["scene"] is None
    # many unclosed tags: the released regex rescans from each; this stays linear and finds nothing
    assert released_tags("<THINK>" + "<think>" * 20000)["think"] is None
    assert released_tags("<think>a</think>")["think"] == "a"


def test_released_tags_ignore_order_and_paper_enforces_it():
    ordered = "<scene>The image shows a park.</scene><think>the dog is left of it</think><answer>[1]</answer>"
    reordered = "<answer>[1]</answer><think>the dog is left of it</think><scene>The image shows a park.</scene>"
    assert tags_reward(ordered, NO_REF) == tags_reward(reordered, NO_REF) == 2.0
    assert tags_reward_paper(ordered, NO_REF) == 2.0
    # in order: only the answer counts after scene/think are skipped ... the scene comes last: scene
    # counts, then nothing after it; with no reference the absent focus still earns its 0.5
    assert tags_reward_paper(reordered, NO_REF) == pytest.approx((0.5 + 0.5) * 2 / 2.0)


@pytest.mark.parametrize(
    ("problem", "raw_maximum"),
    [(REF, 2.3), ("Find the dog left of [300, 100, 400, 250].", 2.3), (NO_REF, 2.0)],
)
def test_paper_tags_are_normalised_to_two(problem, raw_maximum):
    focus = "<focus>a white cat holds a toy mouse</focus>" if raw_maximum == 2.3 else ""
    full = f"<scene>The image shows a park.</scene>{focus}<think>the dog is left of it</think><answer>[1]</answer>"
    assert tags_reward(full, problem, enforce_order=True) == pytest.approx(raw_maximum)
    assert tags_reward_paper(full, problem) == 2.0
    half = "<think>the dog is left of it</think>"  # 0.5 raw (+0.5 for the absent focus without reference)
    raw = 0.5 if raw_maximum == 2.3 else 1.0
    assert tags_reward_paper(half, problem) == pytest.approx(raw * 2 / raw_maximum)


# --------------------------------------------------------------------------------------------
# F_json (5.2)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"bbox_2d": [1, 2, 3, 4, 5], "point_2d": [2, 3]}]', 1.0),  # box of 5
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3, 4]}]', 1.0),  # point of 3
        ('[{"bbox_2d": "1,2,3,4", "point_2d": [2, 3]}]', 1.0),  # a string is no list
        ('[{"bbox_2d": ["1", "2", "3", "4"], "point_2d": ["2", "3"]}]', 2.0),  # F_json checks lengths only
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, 7]', 0.0),  # a non-object item: 0
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {}]', 1.0),  # averaged over items
        ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", 0.0),
        ("[" * 100000, 0.0),  # unparsable, however deep
        ("nothing", 0.0),
    ],
)
def test_answer_format_rules(text, expected):
    assert answer_format_reward(f"<answer>{text}</answer>") == expected


def test_answer_format_without_an_answer_tag():
    assert answer_format_reward('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]') == 0.0


# --------------------------------------------------------------------------------------------
# R_acc (5.4): coordinates that are not JSON numbers, as the released numpy code treats them
# --------------------------------------------------------------------------------------------

# Released behaviour: the coordinates become numpy arrays (np.array of the JSON values) and the
# IoU / L1 / distance arithmetic runs on them inside a try that pays 0 on any error. A string
# array (any quoted number), an object array (null) and an all-boolean box array fail; a boolean
# among integers is upcast to 0/1. F_json only checks the list lengths.
NON_NUMERIC = [
    ("quoted box", [item(["10", "10", "110", "110"])], 0.0, 2.0),
    ("quoted point", [item([10, 10, 110, 110], ["60", "60"])], 0.0, 2.0),
    ("one quoted coordinate", [item([10, "10", 110, 110])], 0.0, 2.0),
    ("quoted decimals", [item(["10.0", "10", "110", "110"])], 0.0, 2.0),
    ("quoted box in a second item", [item([10, 10, 110, 110]), item(["1", "2", "3", "4"], [2, 3])], 0.0, 2.0),
    ("null coordinate", [item([None, 10, 110, 110])], 0.0, 2.0),
    ("all-boolean box", [item([True, True, True, True])], 0.0, 2.0),
    ("a boolean among integers (True = 1)", [item([True, 10, 110, 110])], 3.0, 2.0),
    ("boolean point (True = 1: no point hit)", [item([10, 10, 110, 110], [True, 60])], 2.0, 2.0),
    ("nested box", [item([[10, 10], [110, 110]])], 0.0, 1.0),
    ("box of five", [item([10, 10, 110, 110, 5])], 0.0, 1.0),
    ("point of three", [item([10, 10, 110, 110], [60, 60, 1])], 0.0, 1.0),
    ("point of one", [item([10, 10, 110, 110], [60])], 0.0, 1.0),
    ("box as a string", [item("10,10,110,110")], 0.0, 1.0),
    ("box as an object", [{"bbox_2d": {"x1": 10}, "point_2d": [60, 60]}], 0.0, 1.0),
    ("decimals", [item([10.4, 10, 110, 110])], 3.0, 2.0),
    ("an item without point_2d", [item([10, 10, 110, 110]), {"bbox_2d": [10, 10, 110, 110]}], 0.0, 1.5),
]


@pytest.mark.parametrize(("case", "items", "accuracy", "fmt"), NON_NUMERIC, ids=[c[0] for c in NON_NUMERIC])
def test_released_accuracy_on_non_numeric_coordinates(case, items, accuracy, fmt):
    response = answer(items)
    assert accuracy_reward(response, GOLD_JSON) == accuracy, case
    assert answer_format_reward(response) == fmt, case
    assert score(response, GOLD_JSON, NO_REF, "released")["accuracy"] == accuracy


def test_released_accuracy_on_non_finite_numbers():
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = f'<answer>[{{"bbox_2d": [{literal}, 10, 110, 110], "point_2d": [60, 60]}}]</answer>'
        assert accuracy_reward(text, GOLD_JSON) <= 2.0  # the box never hits; nothing raises


def test_released_iou_hit_is_strictly_above_one_half():
    gold = [item([0, 0, 99, 99], (900, 900))]  # 100 x 100 inclusive pixels
    # inclusive IoU exactly 0.5 (100 x 50 inside) is no hit; mean L1 12.5 and the far point miss too
    assert accuracy_reward(answer([item([0, 0, 99, 49], (500, 500))]), gold) == 0.0
    assert accuracy_reward(answer([item([0, 0, 99, 50], (500, 500))]), gold) == 1.0  # 0.51


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        # mean L1 < 10 strictly: shift x1 and x2 by 20 -> mean 10 (IoU still a hit)
        (item([30, 10, 130, 110], (500, 500)), 1.0),
        (item([29, 10, 129, 110], (500, 500)), 2.0),  # mean L1 9.5
        # point distance < 30 strictly, and inside its own box (borders inclusive)
        (item([10, 10, 110, 110], (90, 60)), 3.0 - 1.0),  # distance 30: no point hit
        (item([10, 10, 110, 110], (89, 60)), 3.0),
        (item([10, 10, 110, 110], (60, 110)), 2.0),  # on the border, but 50 px away
        (item([60, 60, 110, 110], (60, 60)), 1.0),  # point on its own box's corner: inside; IoU/L1 miss
        (item([61, 61, 110, 110], (60, 60)), 0.0),  # the gold point, outside the predicted box
    ],
)
def test_released_accuracy_thresholds(pred, expected):
    assert accuracy_reward(answer([pred]), GOLD) == expected


def test_released_accuracy_matching_dilution_and_cap():
    a, b = item([10, 10, 110, 110]), item([300, 300, 400, 400], (350, 350))
    assert accuracy_reward(answer([b, a]), [a, b]) == 3.0  # Hungarian: the order does not matter
    assert accuracy_reward(answer([a]), [a, b]) == 1.5  # a missing object dilutes: / max(M, N)
    assert accuracy_reward(answer([a, b]), [a]) == 1.5  # an extra one too
    wrong = item([500, 500, 600, 600], (550, 550))
    assert accuracy_reward(answer([wrong] * 120 + [a]), [a]) == 0.0  # only the first 120 are read
    assert accuracy_reward(answer([a] + [wrong] * 120), [a]) == pytest.approx(3 / 120)
    assert accuracy_reward(answer([a]), [wrong] * 120 + [a]) == 0.0  # gold is capped too


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        (GOLD_JSON, 3.0),
        (GOLD, 3.0),  # a list of objects works as well as its JSON text
        (json.dumps(GOLD[0]), 3.0),  # a single gold object
        ("not json", 0.0),
        ("[" * 100000, 0.0),
        (None, 0.0),
        ("[]", 0.0),
        ('"a string"', 0.0),
    ],
)
def test_released_accuracy_gold_forms(solution, expected):
    assert accuracy_reward(answer(GOLD), solution) == expected


@pytest.mark.parametrize(
    "text",
    [
        '<answer>{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}</answer>',  # a dict, not a list
        '<answer>```json\n[{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}]\n```</answer>',
        '<answer>["bbox_2d"]</answer>',
        "<answer>[]</answer>",
        "no answer",
    ],
)
def test_released_accuracy_needs_a_strict_json_list(text):
    assert accuracy_reward(text, GOLD) == 0.0


def test_released_iou_hit_agrees_with_the_geometry_module():
    """The reward's numpy IoU against :func:`geometry.box_iou_inclusive` (an independent implementation)."""
    rng = random.Random(7)
    for _ in range(300):
        gx, gy = rng.randint(0, 300), rng.randint(0, 300)
        gold_box = [gx, gy, gx + rng.randint(1, 120), gy + rng.randint(1, 120)]
        px, py = gx + rng.randint(-60, 60), gy + rng.randint(-60, 60)
        pred_box = [px, py, px + rng.randint(1, 120), py + rng.randint(1, 120)]
        far = (900, 900)  # no point hit; mean L1 checked separately below
        got = accuracy_reward(answer([item(pred_box, far)]), [item(gold_box, (0, 0))])
        l1 = sum(abs(p - g) for p, g in zip(pred_box, gold_box, strict=True)) / 4
        assert got == float(box_iou_inclusive(pred_box, gold_box) > 0.5) + float(l1 < 10), (pred_box, gold_box)


# --------------------------------------------------------------------------------------------
# R_ref (5.3)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("think", "problem", "expected"),
    [
        ("BBOX=[300,100,400,250] holds a cat", REF, 2.0),  # the think is lowercased
        ("bbox = [ 300 , 100 , 400 , 250 ]", REF, 2.0),
        ("bbox[300,100,400,250]", REF, 2.0),  # '=' optional in the think
        ("the bounding box of the cat", REF, 1.0),
        ("its coordinates are known", REF, 1.0),
        ("a cat", REF, 0.0),
        ("bbox=[300,100,400,250] bbox=[300,100,400,250]", REF, 2.0),  # a set: duplicates count once
        ("bbox=[300,100,400,250] bbox=[1,2,3,4] bbox=[5,6,7,8]", REF, (1 + 1 / 3) * 0.5),
        # two references, one cited: the share is over the cited boxes, not the references
        ("bbox=[300,100,400,250]", REF + " and bbox=[1,1,2,2]", 2.0),
        ("bbox=[300,100,400,250] bbox=[1,1,2,2]", REF + " and bbox=[1,1,2,2]", 2.0),
        ("x", REF.replace("bbox=", "bbox ="), 0.0),  # still a reference with a space before '='
        ("x", "near [300, 100, 400, 250]", 1.0),  # the bare form is no reference: 1
        ("x", "", 1.0),
        ("bbox=[" + "1" * 5000 + ",1,1,1]", REF, 0.0),  # int() refuses > 4300 digits: the try pays 0
    ],
)
def test_released_reference_rules(think, problem, expected):
    assert reference_reward(f"<think>{think}</think>", problem) == pytest.approx(expected)


@pytest.mark.parametrize("keyword", REFERENCE_KEYWORDS)
def test_every_reference_keyword_counts(keyword):
    assert reference_reward(f"<think>the {keyword} there</think>", REF) == 1.0


def test_paper_reference_only_an_answer_tag_box_is_the_target():
    """The target-box exemption needs the box in <answer>: the same box written after </think> without
    the tag is no answer, so the think's mention of it counts as a hallucinated reference."""
    think = "<think>bbox=[300,100,400,250] so the dog is at [120,140,260,300]</think>"
    untagged = json.dumps([item([120, 140, 260, 300], (190, 220))])
    assert reference_reward_paper(think + untagged, REF) == pytest.approx(1.25)
    assert reference_reward_paper(think + answer([item([120, 140, 260, 300], (190, 220))]), REF) == 2.0


def test_released_reference_without_think_or_problem():
    assert reference_reward("bbox=[300,100,400,250]", REF) == 0.0
    assert reference_reward("<think>bbox=[300,100,400,250]</think>", None) == 0.0


@pytest.mark.parametrize(
    ("think", "answer_box", "kwargs", "expected"),
    [
        ("bbox=[300,100,400,250]", None, {}, 2.0),
        ("bbox=[310,90,410,260]", None, {}, 2.0),  # 10 px off in every coordinate: within tolerance
        ("bbox=[311,100,400,250]", None, {}, 0.5),  # 11 px off: hallucinated (1 - 0.5)
        ("bbox=[311,100,400,250]", None, {"tolerance": 11}, 2.0),
        ("bbox=[1,2,3,4]", None, {"penalty": 0.25}, 0.75),
        ("bbox=[300,100,400,250] bbox=[1,2,3,4]", None, {}, 1.25),
        # the answer's own box stated in the think is not a hallucinated reference
        ("bbox=[300,100,400,250] so the dog is at [120,140,260,300]", [120, 140, 260, 300], {}, 2.0),
        ("the dog is at [125,140,260,300]", [120, 140, 260, 300], {}, 1.0),  # only the target: mention
        ("bbox=[300,100,400,250] and [1,2,3,4]", [120, 140, 260, 300], {}, 1.25),  # not the answer's box
        ("the bbox", None, {}, 1.0),
        ("nothing", None, {}, 0.0),
        ("bbox=[300.5,100,400,250]", None, {}, 2.0),  # decimals read
    ],
)
def test_paper_reference_rules(think, answer_box, kwargs, expected):
    response = f"<think>{think}</think>"
    if answer_box is not None:
        response += answer([item(answer_box, (190, 220))])
    assert reference_reward_paper(response, REF, **kwargs) == pytest.approx(expected)


def test_paper_reference_penalty_is_clipped_at_zero_and_not_required_is_one():
    many = " ".join(f"bbox=[{i},{i},{i + 5},{i + 5}]" for i in range(5))
    assert reference_reward_paper(f"<think>{many}</think>", REF, penalty=3.0) == 0.0
    for problem in (None, "", NO_REF):
        assert reference_reward_paper("", problem) == 1.0
        assert score("", "[]", problem, "paper")["reference"] == 1.0
    assert reference_reward_paper("no think", REF) == 0.0


# --------------------------------------------------------------------------------------------
# R_nonrep (5.5)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A. B. C.", 1.0),
        ("A. A. B.", 1.0),  # one repeat is tolerated
        ("A. A. A.", 0.0),  # the second repeat zeroes it
        ("A. B. A. B.", 0.0),  # repeats of different sentences add up
        ("A . A.  A  .", 0.0),  # sentences are stripped
        ("A. a. A.", 1.0),  # exact (case-sensitive) repeats only
        ("..  . .", 1.0),  # empty sentences never count
        ("", 1.0),
    ],
)
def test_non_repeat_rules(text, expected):
    assert non_repeat_reward(text) == expected


# --------------------------------------------------------------------------------------------
# R_cons (5.5)
# --------------------------------------------------------------------------------------------


def cons(scene, think, focus=None, problem="q"):
    text = f"<scene>{scene}</scene>" + (f"<focus>{focus}</focus>" if focus is not None else "")
    return consistency_reward(text + f"<think>{think}</think><answer>[]</answer>", problem)


@pytest.mark.parametrize(
    ("scene", "think", "focus", "expected"),
    [
        ("dog cat", "dog", None, 0.5 + 0.6),  # S = 1/2; no focus: Fo = 1
        ("dog cat", "dog", "", 0.5 + 0.6),  # an empty focus counts as none
        ("dog cat", "dog", "horse cow", 0.5 + 0.0),
        ("dog cat", "dog", "horse dog", 0.5 + 0.3),
        ("dog dog cat", "dog", None, 2 / 3 + 0.6),  # duplicates are kept
        ("man on a horse", "woman", None, 0.5 + 0.6),  # substring test: "man" is in "woman"
        ("ox dog", "dog", None, 1.0 + 0.6),  # 2-letter words are no keywords
        ("cow dog", "dog", None, 0.5 + 0.6),  # 3-letter words are
        ("the was dog", "dog", None, 1.0 + 0.6),  # stop words are no keywords
        ("DOG cat", "Dog", None, 0.5 + 0.6),  # both lowercased
        # only the first ten keywords count: the 11th (hit) changes nothing
        ("aaa bbb ccc ddd eee fff ggg hhh iii jjj dog", "dog", None, 0.0 + 0.6),
        ("aaa bbb ccc ddd eee fff ggg hhh iii dog", "dog", None, 0.1 + 0.6),
        ("", "dog", None, 0.0 + 0.6),  # no keyword: S = 0
    ],
)
def test_released_consistency_coverage(scene, think, focus, expected):
    assert cons(scene, think, focus) == pytest.approx(expected)


@pytest.mark.parametrize(("bonus", "words"), LOGIC_GROUPS, ids=["spatial", "comparison", "location", "reference"])
def test_released_logic_bonus_groups(bonus, words):
    for word in words:
        assert cons("zzz", f"qqq {word} qqq") == pytest.approx(0.6 + 0.4 * bonus), word
    assert cons("zzz", " ".join(words)) == pytest.approx(0.6 + 0.4 * bonus)  # a group counts once


def test_released_consistency_maximum_and_preconditions():
    every_group = "left compare locate bbox"
    assert cons("dog", f"dog {every_group}", focus="dog") == pytest.approx(1.0 + 0.6 + 0.4 * 1.2)
    full = "<scene>dog</scene><think>dog</think><answer>[]</answer>"
    assert consistency_reward(full, "q") == pytest.approx(1.6)
    assert consistency_reward(full, "") == 0.0
    assert consistency_reward(full, None) == 0.0
    assert consistency_reward(full.replace("<scene>dog</scene>", ""), "q") == 0.0
    assert consistency_reward(full.replace("<think>dog</think>", ""), "q") == 0.0
    assert consistency_reward(full.replace("<answer>[]</answer>", ""), "q") == 0.0


def paper_cons(scene, think, focus=None):
    text = f"<scene>{scene}</scene>" + (f"<focus>{focus}</focus>" if focus is not None else "")
    return consistency_reward_paper(text + f"<think>{think}</think><answer>[]</answer>", "q")


@pytest.mark.parametrize(
    ("scene", "think", "focus", "expected"),
    [
        ("dogs", "a dog", None, 1.0),  # lemmas: overlap (1 + 0.6) / 1.6
        ("man", "woman", None, 0.6 / 1.6),  # not a substring test
        ("dog cat", "dog", "horse", 0.5 / 1.6),
        ("dog", "dog", "dog", 1.0),
        ("dog", "dog left compare locate", None, 2.0),  # spatial + comparative + localisation = 1
        ("dog", "dog bbox reference guidance", None, 1.0),  # the reference words are R_ref's, not the prior's
        ("dog", "dog next to it", None, 1.5),  # a multi-word cue as a phrase
        ("dog", "dog compare", None, 1.3),
        ("dog", "dog locate", None, 1.2),
    ],
)
def test_paper_consistency_overlap_plus_capped_prior(scene, think, focus, expected):
    assert paper_cons(scene, think, focus) == pytest.approx(expected)


def test_paper_prior_is_the_three_named_cue_groups_capped_at_one():
    assert [bonus for bonus, _ in PAPER_PRIOR_GROUPS] == [0.5, 0.3, 0.2]
    assert paper_cons("dog", "dog left right above compare match locate region bbox") == pytest.approx(2.0)


def test_paper_consistency_preconditions():
    full = "<scene>dog</scene><think>dog</think><answer>[]</answer>"
    assert consistency_reward_paper(full, "q") == pytest.approx(1.0)
    assert consistency_reward_paper(full, None) == 0.0
    assert consistency_reward_paper(full.replace("<answer>[]</answer>", ""), "q") == 0.0


# --------------------------------------------------------------------------------------------
# Paper accuracy, ranges, totals and the TRL entry points
# --------------------------------------------------------------------------------------------


def test_paper_accuracy_is_the_released_matching_scaled_to_two():
    assert accuracy_reward_paper(answer(GOLD), GOLD) == 2.0
    # the evaluator's IoU (exclusive) where the inclusive one differs: [0,0,3,3] vs [1,0,4,3]
    gold = [item([0, 0, 3, 3], (900, 900))]
    pred = [item([1, 0, 4, 3], (500, 500))]
    assert box_iou(pred[0]["bbox_2d"], gold[0]["bbox_2d"]) == pytest.approx(0.5)  # no hit (strict)
    assert box_iou_inclusive(pred[0]["bbox_2d"], gold[0]["bbox_2d"]) == pytest.approx(0.6)
    assert accuracy_reward(answer(pred), gold) == 2.0  # released: IoU and L1 hits
    assert accuracy_reward_paper(answer(pred), gold) == pytest.approx(2 / 3)  # paper: the L1 hit only
    gold = [item([0, 0, 1, 1], (200, 200))]
    pred = [item([1, 1, 2, 2], (500, 500))]  # inclusive IoU 1/7, exclusive 0: only the L1 hit
    assert accuracy_reward_paper(answer(pred), gold) == pytest.approx(2 / 3)
    # without a point, IoU and L1 still count (the tolerant parser keeps the box)
    assert accuracy_reward_paper(answer([{"bbox_2d": [10, 10, 110, 110]}]), GOLD) == pytest.approx(4 / 3)
    assert accuracy_reward_paper("<answer>none</answer>", GOLD) == 0.0
    assert accuracy_reward_paper(answer(GOLD), "not json") == 0.0


def test_paper_components_stay_within_zero_and_two():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(
        ["<scene>", "</scene>", "<focus>", "</focus>", "<think>", "</think>", "<answer>", "</answer>",
         "bbox=[300,100,400,250]", "[120,140,260,300]", "bbox=[1,2,3,4]", json.dumps([item([10, 10, 110, 110])]),
         "the image shows a dog", " left of ", "compare", "locate", "bbox", ".", " ", "dog dog", "a cat sits"]
    )

    @settings(max_examples=120, deadline=None)
    @given(st.lists(pieces, max_size=25), st.sampled_from([REF, NO_REF, None]))
    def check(parts, problem):
        parts_score = score("".join(parts), GOLD_JSON, problem, "paper")
        for name in COMPONENTS:
            assert 0.0 <= parts_score[name] <= 2.0, (name, parts_score)

    check()


def test_totals_weigh_the_components():
    text = "<scene>The image shows a dog.</scene><think>the dog is left of it</think>" + answer(GOLD)
    released = score(text, GOLD_JSON, NO_REF)
    assert released["total"] == pytest.approx(sum(released[c] for c in COMPONENTS))
    paper = score(text, GOLD_JSON, NO_REF, RewardProfile("paper", alpha=0.25, beta=3.0))
    weights = {"reference": 0.25, "consistency": 3.0}
    assert paper["total"] == pytest.approx(sum(weights.get(c, 1.0) * paper[c] for c in COMPONENTS))
    with pytest.raises(TypeError, match="response must be text"):
        score(None, GOLD_JSON, NO_REF)


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", -0.1), ("beta", float("inf")), ("citation_tolerance", "10"), ("hallucination_penalty", float("nan"))],
)
def test_profile_rejects_bad_numbers(field, value):
    with pytest.raises(ValueError, match=field):
        RewardProfile("paper", **{field: value})


def test_profile_weights_and_paper_options_reach_the_reward():
    assert RewardProfile("paper", alpha=0.5, beta=2.0).weights() == [1.0, 1.0, 0.5, 1.0, 1.0, 2.0]
    assert RewardProfile("released").weights() == [1.0] * 6
    near = "<think>bbox=[305,100,400,250]</think>"
    assert score(near, GOLD_JSON, REF, RewardProfile("paper", citation_tolerance=2))["reference"] == 0.5
    assert score(near, GOLD_JSON, REF, RewardProfile("paper"))["reference"] == 2.0
    far = "<think>bbox=[1,2,3,4]</think>"
    assert score(far, GOLD_JSON, REF, RewardProfile("paper", hallucination_penalty=1.0))["reference"] == 0.0


@pytest.mark.parametrize("profile", ["released", "paper"])
def test_trl_functions_equal_score_per_component(profile):
    completions = [
        "<scene>The image shows a dog.</scene><think>bbox=[300,100,400,250] left</think>" + answer(GOLD),
        [{"role": "assistant", "content": [{"type": "text", "text": "<think>x</think>"}, {"type": "image"}]}],
    ]
    columns = {"problem": [REF, NO_REF], "solution": [GOLD_JSON, GOLD_JSON]}
    for name, function in zip(COMPONENTS, reward_functions(profile), strict=True):
        assert function.__name__ == name
        got = function(prompts=["p", "p"], completions=completions, **columns)
        expected = [score(completion_text(c), s, p, profile)[name]
                    for c, s, p in zip(completions, columns["solution"], columns["problem"], strict=True)]
        assert got == expected, name


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    assert completion_text([]) == "" and completion_text(None) == ""
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "b"
    with pytest.raises(TypeError, match="int"):
        completion_text(5)


# --------------------------------------------------------------------------------------------
# Rows added for the mutants the first mutation run left alive (scripts/mutation.py rewards)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        # the point on its box's right / bottom border is inside (15 px from the gold point)
        (item([10, 10, 110, 110], (110, 60)), item([500, 500, 600, 600], (95, 60)), 1.0),
        (item([10, 10, 110, 110], (60, 110)), item([500, 500, 600, 600], (60, 95)), 1.0),
        (item([10, 10, 110, 110], (111, 60)), item([500, 500, 600, 600], (96, 60)), 0.0),  # just outside
        # x and y are not swapped: a point inside in x, inside in y, in a box far from the diagonal
        (item([90, 10, 110, 30], (100, 20)), item([500, 500, 600, 600], (100, 20)), 1.0),
        # left and top borders, and boxes whose x and y bounds differ (each bound read from its own coordinate)
        (item([10, 10, 110, 110], (10, 60)), item([500, 500, 600, 600], (25, 60)), 1.0),
        (item([10, 10, 110, 110], (60, 10)), item([500, 500, 600, 600], (60, 25)), 1.0),
        (item([10, 10, 110, 300], (60, 300)), item([500, 500, 600, 600], (60, 290)), 1.0),
        (item([10, 50, 110, 110], (20, 60)), item([500, 500, 600, 600], (20, 60)), 1.0),
    ],
)
def test_point_inside_its_own_box_on_every_border(pred, gold, expected):
    assert accuracy_reward(answer([pred]), [gold]) == expected
    assert accuracy_reward_paper(answer([pred]), [gold]) == pytest.approx(expected * 2 / 3)


@pytest.mark.parametrize(
    ("pred", "hits"),
    [
        (item([30, 10, 130, 110], (500, 500)), 1),  # mean L1 exactly 10: IoU only
        (item([29, 10, 129, 110], (500, 500)), 2),  # 9.5: IoU and L1
        (item([10, 10, 110, 110], (90, 60)), 2),  # point 30 px away: no point hit
        (item([10, 10, 110, 110], (89, 60)), 3),
        (item([200, 10, 300, 110], (89, 60)), 0),  # the gold point, outside the predicted box
    ],
)
def test_paper_accuracy_thresholds(pred, hits):
    assert accuracy_reward_paper(answer([pred]), GOLD) == pytest.approx(hits * 2 / 3)


def test_paper_accuracy_caps_and_gold_forms():
    a, wrong = item([10, 10, 110, 110]), item([500, 500, 600, 600], (550, 550))
    assert accuracy_reward_paper(answer([a]), [wrong] * 119 + [a]) == pytest.approx(2 / 120)  # 120th gold read
    assert accuracy_reward_paper(answer([a]), [wrong] * 120 + [a]) == 0.0  # the 121st is not
    assert accuracy_reward_paper(answer([wrong] * 119 + [a]), [a]) == pytest.approx(2 / 120)
    assert accuracy_reward_paper(answer([a] + [wrong] * 120), [a]) == pytest.approx(2 / 120)  # 120 answers read
    assert accuracy_reward(answer([a]), [wrong] * 119 + [a]) == pytest.approx(3 / 120)
    # gold items without a usable box are skipped; a gold without a point gives no point hit
    assert accuracy_reward_paper(answer([a]), [{"bbox_2d": [1, 2, 3]}, a]) == 2.0
    assert accuracy_reward_paper(answer([a]), [{"bbox_2d": [10, 10, 110, 110]}]) == pytest.approx(4 / 3)
    assert accuracy_reward_paper(answer([a]), [{"bbox_2d": [10, 10, 110, 110], "point_2d": [60]}]) == pytest.approx(4 / 3)
    assert accuracy_reward_paper(answer([a]), [{"box": [10, 10, 110, 110]}, "x", 5]) == 0.0


def test_each_profile_scores_with_its_own_component_functions():
    """score() picks the released or the paper function of every component (they differ on this text)."""
    response = ("<think>bbox=[300,100,400,250] and bbox=[1,2,3,4], locate the dog compared</think>"
                "<scene>dogs on grass</scene>" + answer([item([10, 10, 110, 110])]))
    released, paper = score(response, GOLD_JSON, REF, "released"), score(response, GOLD_JSON, REF, "paper")
    assert released["tags"] == tags_reward(response, REF) != paper["tags"] == tags_reward_paper(response, REF)
    assert released["reference"] == reference_reward(response, REF) == 0.75
    assert paper["reference"] == reference_reward_paper(response, REF) == 1.25
    assert released["accuracy"] == 3.0 and paper["accuracy"] == 2.0
    assert released["consistency"] == consistency_reward(response, REF)
    assert paper["consistency"] == consistency_reward_paper(response, REF) != released["consistency"]


def test_paper_consistency_edges():
    assert paper_cons("the was and", "dog") == pytest.approx(0.6 / 1.6)  # a scene without keywords covers 0
    assert paper_cons("dog", "dog compared") == pytest.approx(1.3)  # a cue word counts as a lemma
    assert paper_cons("dog", "dog nextto") == pytest.approx(1.0)  # a phrase cue needs its words


def test_completion_text_message_shapes():
    assert completion_text(["plain text message"]) == "plain text message"
    parts = [{"type": "image"}, {"text": "no type"}, {"type": "text", "text": "a"}, "b", {"type": "text", "text": "c"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "ac"
    with pytest.raises(TypeError):
        completion_text([{"role": "assistant", "content": {"type": "text", "text": "a"}}])


def test_trl_function_column_checks():
    with pytest.raises(KeyError, match="needs the dataset columns"):
        reward_functions()[0](prompts=["p"], completions=["x"], solution=["[]"])
    with pytest.raises(ValueError):  # one problem and solution per completion
        reward_functions()[0](prompts=["p", "p"], completions=["x", "y"], problem=[REF], solution=[GOLD_JSON])


def test_zero_weights_are_allowed():
    assert RewardProfile("paper", alpha=0.0, beta=0.0).weights() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("gold_box", [[5, 0, 5, 0], [0, 5, 0, 5]], ids=["apart-in-x", "apart-in-y"])
def test_single_pixel_boxes_that_do_not_meet_share_no_pixel(gold_box):
    # inclusive pixels: [0,0,0,0] is one pixel; a box apart in one axis only shares nothing (mean L1 2.5: a hit)
    assert accuracy_reward(answer([item([0, 0, 0, 0], (500, 500))]), [item(gold_box, (900, 900))]) == 1.0


def test_paper_accuracy_needs_the_answer_tag():
    assert accuracy_reward_paper(json.dumps(GOLD), GOLD) == 0.0
    assert accuracy_reward_paper(answer(GOLD), GOLD) == 2.0
