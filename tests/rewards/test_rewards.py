"""Rewards against UPSTREAM.md section 5: the worked example, component ranges and hand cases."""

from __future__ import annotations

import json
import warnings

import pytest

from regiondial_bench.training import rewards
from regiondial_bench.training.rewards import (
    COMPONENTS,
    RewardProfile,
    accuracy_reward,
    answer_format_reward,
    consistency_reward,
    non_repeat_reward,
    reference_reward,
    reference_reward_paper,
    reward_functions,
    score,
    score_released,
    tags_reward,
)

PROBLEM = "Find the dog to the left of bbox=[300,100,400,250]."
SOLUTION = '[{"bbox_2d": [120, 140, 260, 300], "point_2d": [190, 220]}]'
ANSWER = '<answer>[{"bbox_2d": [120, 140, 260, 300], "point_2d": [190, 220]}]</answer>'
WORKED = "\n".join(
    [
        "<scene>The picture shows a kitchen with a cat and a table.</scene>",
        "<focus>A white cat holds a toy mouse on a wooden chair beside a lamp and a plant.</focus>",
        "<think>The reference bbox=[300,100,400,250] holds a cat with a toy; the dog is to the left of that cat.</think>",
        ANSWER,
    ]
)


@pytest.fixture(autouse=True)
def _quiet_spacy_fallback():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="spaCy model")
        yield


def test_worked_example_totals_10_96():
    parts = score_released(WORKED, SOLUTION, PROBLEM)
    assert parts == {
        "tags": 2.3,
        "answer_format": 2.0,
        "reference": 2.0,
        "accuracy": 3.0,
        "non_repeat": 1.0,
        "consistency": 0.66,
        "total": 10.96,
    }


def test_worked_example_reversed_lines_score_the_same():
    reversed_text = "\n".join(reversed(WORKED.splitlines()))
    assert score_released(reversed_text, SOLUTION, PROBLEM) == score_released(WORKED, SOLUTION, PROBLEM)


def test_paper_profile_enforces_tag_order_on_the_reversed_example():
    reversed_text = "\n".join(reversed(WORKED.splitlines()))
    assert score(WORKED, SOLUTION, PROBLEM, "paper")["tags"] == 2.0  # 2.3 of 2.3, normalised to [0, 2]
    assert score(reversed_text, SOLUTION, PROBLEM, "paper")["tags"] < 2.0


def test_maximum_with_and_without_reference():
    think = (
        "The reference bbox=[300,100,400,250] shows a cat; compare candidates, locate the dog "
        "left of the cat in the kitchen picture with the table and toy near the wooden chair, white lamp plant mouse; it holds things beside it."
    )
    text = (
        "<scene>The picture shows a kitchen with a cat and a table.</scene>"
        "<focus>A white cat holds a toy mouse on a wooden chair beside a lamp and a plant.</focus>"
        f"<think>{think}</think>{ANSWER}"
    )
    parts = score_released(text, SOLUTION, PROBLEM)
    assert parts["consistency"] == pytest.approx(2.08)
    assert parts["total"] == pytest.approx(12.38)
    no_ref = text.replace(
        "<focus>A white cat holds a toy mouse on a wooden chair beside a lamp and a plant.</focus>", ""
    )
    parts = score_released(no_ref, SOLUTION, "Find the dog near the kitchen table.")
    assert parts["tags"] == 2.0 and parts["reference"] == 1.0
    assert parts["total"] == pytest.approx(11.08)


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        (None, 0.0),
        ("short", 0.2),
        ("A sunny street with cars", 0.3),
        ("The photo has cars on a street", 0.5),
    ],
)
def test_scene_tag_scores(scene, expected):
    text = "" if scene is None else f"<scene>{scene}</scene>"
    # no reference and no focus: focus earns 0.5, nothing else present
    assert tags_reward(text, "find the car") == pytest.approx(expected + 0.5)


@pytest.mark.parametrize(
    ("focus", "problem", "expected"),
    [
        (None, PROBLEM, 0.0),
        ("", PROBLEM, 0.0),
        ("a cat", PROBLEM, 0.2),
        ("a cat sitting on a chair", PROBLEM, 0.8),
        ("find the dog to the left", PROBLEM, 0.0),  # anti-copy: 5/7 of the problem tokens
        (None, "find the dog", 0.5),
        ("", "find the dog", 0.0),  # present without a reference, even empty
    ],
)
def test_focus_tag_scores(focus, problem, expected):
    text = "" if focus is None else f"<focus>{focus}</focus>"
    assert tags_reward(text, problem) == pytest.approx(expected)


def test_think_and_answer_tag_thresholds():
    assert tags_reward("<think>123456789</think>", PROBLEM) == pytest.approx(0.2)
    assert tags_reward("<think>1234567890</think>", PROBLEM) == pytest.approx(0.5)
    assert tags_reward("<answer>[]</answer>", PROBLEM) == pytest.approx(0.1)
    assert tags_reward("<answer>[1]</answer>", PROBLEM) == pytest.approx(0.5)


def test_tags_are_case_sensitive_as_released():
    assert tags_reward("<THINK>long enough text</THINK>", PROBLEM) == 0.0
    assert tags_reward("<think>long enough text</think>", PROBLEM) == 0.5


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]', 2.0),
        ('[{"bbox_2d": [1, 2, 3, 4]}]', 1.0),
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"point_2d": [1, 1]}]', 1.5),
        ("[]", 0.0),
        ('{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}', 0.0),  # a dict, not a list
        ('```json\n[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]\n```', 0.0),  # fences
        ("[{'bbox_2d': [1, 2, 3, 4], 'point_2d': [2, 3]}]", 0.0),  # single quotes
        ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}] done', 0.0),  # trailing text
    ],
)
def test_answer_format(answer, expected):
    assert answer_format_reward(f"<answer>{answer}</answer>") == expected


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        ("The bbox=[300,100,400,250] holds a cat.", 2.0),
        ("The bbox [300,100,400,250] holds a cat.", 2.0),  # '=' optional in the think
        ("Looking at the bounding box of the cat.", 1.0),  # keyword only
        ("The cat at [300,100,400,250].", 0.0),  # a bare list is no citation, and no keyword
        ("The bbox at [300,100,400,250].", 1.0),  # keyword, but the list does not follow 'bbox'
        ("bbox=[300,100,400,250] and bbox=[1,2,3,4]", 0.75),
        ("bbox=[1,2,3,4]", 0.5),
        ("bbox=[300.0,100,400,250]", 1.0),  # decimals never match; keyword still counts
        ("nothing relevant", 0.0),
    ],
)
def test_reference_reward_reachable_values(think, expected):
    assert reference_reward(f"<think>{think}</think>", PROBLEM) == expected


def test_reference_reward_edge_cases():
    assert reference_reward("no think", PROBLEM) == 0.0
    assert reference_reward("<think>x</think>", "Find the dog.") == 1.0
    assert reference_reward("<think>x</think>", None) == 0.0


def test_paper_reference_tolerance_and_clip():
    problem = "Find the dog left of [300, 100, 400, 250]."  # evaluation's bare surface form
    near = "<think>bbox=[305,95,398,255]</think>"
    assert reference_reward_paper(near, problem, tolerance=10) == 2.0
    assert reference_reward_paper(near, problem, tolerance=2) == 0.5
    assert reference_reward_paper("<think>bbox=[1,2,3,4]</think>", problem) == 0.5
    assert reference_reward_paper("<think>x</think>", "Find the dog.") == 1.0
    hallucinations = "<think>" + " ".join(f"bbox=[{i},{i},{i + 5},{i + 5}]" for i in range(5)) + "</think>"
    assert reference_reward_paper(hallucinations, problem, penalty=3.0) == 0.0  # clipped at 0


@pytest.mark.parametrize(
    "response",
    ["", "no tags at all", "<answer>[]</answer>", "<think></think>", "<think>bbox=[1,2,3,4]</think>"],
)
def test_paper_reference_is_one_when_no_reference_is_required(response):
    # the paper: R_ref = 1 whenever the question requires no reference box, whatever the response
    assert reference_reward_paper(response, "Find the dog.") == 1.0
    assert score(response, "[]", "Find the dog.", "paper")["reference"] == 1.0
    if "<think>" not in response:  # a reference is required: no think still scores 0
        assert reference_reward_paper(response, PROBLEM) == 0.0


def _answer(items):
    return f"<answer>{json.dumps(items)}</answer>"


def test_accuracy_hits_and_dilution():
    gold = [{"bbox_2d": [10, 10, 110, 110], "point_2d": [60, 60]}]
    assert accuracy_reward(_answer(gold), gold) == 3.0
    # IoU hit only: box shifted by 20 px (L1 mean 20 >= 10), point far
    shifted = [{"bbox_2d": [30, 10, 130, 110], "point_2d": [120, 100]}]
    assert accuracy_reward(_answer(shifted), gold) == 1.0
    # point outside its own predicted box: no point hit
    outside = [{"bbox_2d": [12, 10, 110, 110], "point_2d": [5, 60]}]
    assert accuracy_reward(_answer(outside), gold) == 2.0
    # one extra object dilutes by max(M, N)
    assert (
        accuracy_reward(_answer(gold + [{"bbox_2d": [300, 300, 400, 400], "point_2d": [350, 350]}]), gold)
        == 1.5
    )
    # a missing point_2d anywhere zeroes R_acc
    assert accuracy_reward(_answer([{"bbox_2d": [10, 10, 110, 110]}]), gold) == 0.0
    assert accuracy_reward("<answer>[]</answer>", gold) == 0.0


def test_accuracy_uses_inclusive_pixel_iou():
    gold = [{"bbox_2d": [0, 0, 1, 1], "point_2d": [200, 200]}]
    pred = [{"bbox_2d": [1, 1, 2, 2], "point_2d": [500, 500]}]
    # continuous IoU 0; inclusive IoU 1/7; L1 mean 1 < 10 -> 1 hit from L1 only
    assert accuracy_reward(_answer(pred), gold) == 1.0
    gold = [{"bbox_2d": [0, 0, 3, 3], "point_2d": [900, 900]}]
    pred = [{"bbox_2d": [1, 0, 4, 3], "point_2d": [500, 500]}]
    # continuous IoU 3/5... inclusive IoU (3*4)/(16+16-12)=0.6 > 0.5; both count -> IoU + L1
    assert accuracy_reward(_answer(pred), gold) == 2.0


def test_non_repeat():
    assert non_repeat_reward("One. Two. Three.") == 1.0
    assert non_repeat_reward("One. One. Two.") == 1.0
    assert non_repeat_reward("One. One. Two. Two.") == 0.0
    assert non_repeat_reward("...") == 1.0


def test_consistency_preconditions_and_substring_quirk():
    base = "<scene>a man on a horse</scene><think>the woman rides</think><answer>[]</answer>"
    # released: "man" is a substring of "woman" -> 1 of 2 keywords (man, horse)
    assert consistency_reward(base, "q") == pytest.approx(0.5 + 0.6)
    assert consistency_reward(base, "") == 0.0
    assert consistency_reward(base.replace("<answer>[]</answer>", ""), "q") == 0.0
    # paper: lemma matching, "man" is not "woman": overlap (0 + 0.6 * 1) / 1.6, no cue words
    assert score(base, "[]", "q", "paper")["consistency"] == pytest.approx(0.6 / 1.6)


def test_trl_functions_match_score_and_are_named():
    fns = reward_functions("released")
    assert [f.__name__ for f in fns] == list(COMPONENTS)
    completions = [[{"role": "assistant", "content": WORKED}], [{"role": "assistant", "content": "nothing"}]]
    values = [
        f(prompts=["p", "p"], completions=completions, problem=[PROBLEM] * 2, solution=[SOLUTION] * 2)
        for f in fns
    ]
    assert [v[0] for v in values] == [score_released(WORKED, SOLUTION, PROBLEM)[c] for c in COMPONENTS]
    assert sum(v[0] for v in values) == pytest.approx(10.96)


def test_trl_function_names_missing_columns():
    with pytest.raises(KeyError, match="solution"):
        reward_functions()[0](prompts=["p"], completions=["x"], problem=["p"])


def test_paper_weights_apply_to_total():
    profile = RewardProfile("paper", alpha=0.5, beta=2.0)
    parts = score(WORKED, SOLUTION, PROBLEM, profile)
    expected = (
        parts["tags"]
        + parts["answer_format"]
        + parts["accuracy"]
        + parts["non_repeat"]
        + 0.5 * parts["reference"]
        + 2.0 * parts["consistency"]
    )
    assert parts["total"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "paperish"}, "unknown reward profile"),
        ({"name": "released", "alpha": 2.0}, "Set profile 'paper'"),
        ({"name": "paper", "beta": -1.0}, "beta must be"),
        ({"name": "paper", "citation_tolerance": float("nan")}, "citation_tolerance"),
    ],
)
def test_bad_profiles_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardProfile(**kwargs)


def test_component_ranges_on_random_text():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(
        [
            "<scene>",
            "</scene>",
            "<focus>",
            "</focus>",
            "<think>",
            "</think>",
            "<answer>",
            "</answer>",
            "bbox=[300,100,400,250]",
            "bbox=[1,2,3,4]",
            '[{"bbox_2d": [120, 140, 260, 300], "point_2d": [190, 220]}]',
            "the dog",
            " left of ",
            "image shows",
            ".",
            " ",
            "near",
            "a cat sits here",
        ]
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(pieces, max_size=25))
    def check(parts):
        text = "".join(parts)
        s = score_released(text, SOLUTION, PROBLEM)
        assert 0 <= s["tags"] <= 2.3 + 1e-9
        assert 0 <= s["answer_format"] <= 2
        assert s["reference"] in {0.0, 0.5, 0.75, 1.0, 2.0} or 0 <= s["reference"] <= 2
        assert 0 <= s["accuracy"] <= 3
        assert s["non_repeat"] in {0.0, 1.0}
        assert 0 <= s["consistency"] <= 2.08 + 1e-9
        assert s["total"] <= 12.38 + 1e-9
        p = score(text, SOLUTION, PROBLEM, "paper")
        assert 0 <= p["reference"] <= 2

    check()


def test_module_has_no_heavy_imports_at_import_time():
    import subprocess
    import sys

    code = "import sys, regiondial_bench.training.rewards; print(any(m in sys.modules for m in ('torch','spacy','trl','scipy')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False", rewards.__name__
