"""The multi-round reference planner: waves in dependency order, one question per distinct turn, depth."""

from __future__ import annotations

import pytest

from regiondial_bench.training.rollouts import ReferenceResolver, first_box

# dialogue d: turn 3 refers to 2, 2 to 1, 1 to 0 (the sample bench's chained dialogues look like this)
CHAIN_OF_3 = [
    {"id": "d-2", "problem": "the table left of bbox=[20, 20, 30, 30]", "reference_text": "bbox=[20, 20, 30, 30]"},
    {"id": "d-1", "problem": "the chair near bbox=[10, 10, 15, 15]", "reference_text": "bbox=[10, 10, 15, 15]"},
    {"id": "d-0", "problem": "the lamp", "reference_text": ""},
]


def row(id_="d-3", problem="the cup on bbox=[40, 40, 50, 50]", reference_text="bbox=[40, 40, 50, 50]",
        chain=CHAIN_OF_3, dialogue="d"):
    return {"id": id_, "dialogue_id": dialogue, "problem": problem, "reference_text": reference_text,
            "reference_chain": list(chain), "prompt": [], "image": None}


def answer(box):
    return f'<answer>[{{"bbox_2d": {list(box)}}}]</answer>'


def run(resolver, policy):
    """Answer every wave with ``policy(question) -> text``; returns the waves' questions."""
    waves = []
    while queries := resolver.pending():
        waves.append([q.problem for q in queries])
        resolver.record(queries, [policy(q.problem) for q in queries])
    return waves


BOXES = {"the lamp": (1, 1, 2, 2), "the chair": (3, 3, 4, 4), "the table": (5, 5, 6, 6)}


def policy(question):
    """Answers each object with its own box, whatever the reference says."""
    return answer(next(box for name, box in BOXES.items() if question.startswith(name)))


@pytest.mark.parametrize(
    ("depth", "waves", "problem"),
    [
        (1, [["the table left of bbox=[20, 20, 30, 30]"]], "the cup on bbox=[5, 5, 6, 6]"),
        (2, [["the chair near bbox=[10, 10, 15, 15]"], ["the table left of bbox=[3, 3, 4, 4]"]],
         "the cup on bbox=[5, 5, 6, 6]"),
        (3, [["the lamp"], ["the chair near bbox=[1, 1, 2, 2]"], ["the table left of bbox=[3, 3, 4, 4]"]],
         "the cup on bbox=[5, 5, 6, 6]"),
        (None, [["the lamp"], ["the chair near bbox=[1, 1, 2, 2]"], ["the table left of bbox=[3, 3, 4, 4]"]],
         "the cup on bbox=[5, 5, 6, 6]"),
        (9, [["the lamp"], ["the chair near bbox=[1, 1, 2, 2]"], ["the table left of bbox=[3, 3, 4, 4]"]],
         "the cup on bbox=[5, 5, 6, 6]"),
    ],
)
def test_depth_decides_how_far_the_policy_answers_the_chain(depth, waves, problem):
    resolver = ReferenceResolver([row()], depth=depth)
    assert run(resolver, policy) == waves
    resolved = resolver.resolved_rows()[0]
    assert resolved["problem"] == problem and resolved["reference_source"] == "predicted"
    levels = resolved["reference_levels"]
    assert [lv["depth"] for lv in levels] == list(range(1, len(waves) + 1))
    # the nearest turn was asked with a predicted reference whenever a deeper turn was answered
    assert levels[0]["reference"] == ("predicted" if len(waves) > 1 else "gold")
    assert levels[-1]["reference"] == ("none" if len(waves) == 3 else "gold")
    assert resolver.substitutions_by_depth() == {d: 1 for d in range(1, len(waves) + 1)}


def test_a_group_and_its_neighbours_ask_each_distinct_turn_once():
    group = [row() for _ in range(4)]  # the 4 generations of one sample
    sibling = row("d-2", CHAIN_OF_3[0]["problem"], CHAIN_OF_3[0]["reference_text"], CHAIN_OF_3[1:])
    other_image = row(dialogue="e", id_="e-3")  # the same questions on another image are other questions
    resolver = ReferenceResolver([*group, sibling, other_image], depth=2)
    waves = run(resolver, policy)
    # wave 0: the chair (for the group, gold reference), the lamp (for the sibling), the chair of image e
    assert sorted(waves[0]) == sorted(["the chair near bbox=[10, 10, 15, 15]", "the lamp",
                                        "the chair near bbox=[10, 10, 15, 15]"])
    # wave 1: the table (group, with the chair's predicted box), the chair (sibling, with the lamp's), the table of e
    assert sorted(waves[1]) == sorted(["the table left of bbox=[3, 3, 4, 4]", "the chair near bbox=[1, 1, 2, 2]",
                                        "the table left of bbox=[3, 3, 4, 4]"])
    assert resolver.answered == 6  # not 4 x 2 + 2 + 2: the group's copies share every question
    rows = resolver.resolved_rows()
    assert {r["problem"] for r in rows[:4]} == {"the cup on bbox=[5, 5, 6, 6]"}
    assert rows[4]["problem"] == "the table left of bbox=[3, 3, 4, 4]"
    assert resolver.substitutions_by_depth() == {1: 3, 2: 3}  # ids d-3, d-2, e-3


def test_rows_without_a_reference_need_no_pass():
    plain = row(problem="the lamp", reference_text="", chain=[])
    stale = row(problem="the cup on the table")  # the reference text is not in the problem: nothing to do
    resolver = ReferenceResolver([plain, stale], depth=3)
    assert resolver.pending() == [] and resolver.answered == 0
    assert [r["reference_source"] for r in resolver.resolved_rows()] == ["none", "none"]


def test_an_answer_without_a_box_falls_back_to_gold_at_that_level():
    def no_chair(question):
        return "<answer>none</answer>" if question.startswith("the chair") else policy(question)

    resolver = ReferenceResolver([row()], depth=3)
    waves = run(resolver, no_chair)
    assert waves[2] == ["the table left of bbox=[20, 20, 30, 30]"]  # the table keeps its gold reference
    resolved = resolver.resolved_rows()[0]
    assert [lv["reference"] for lv in resolved["reference_levels"]] == ["gold", "predicted", "none"]
    assert resolver.substitutions_by_depth() == {1: 1, 3: 1}

    resolver = ReferenceResolver([row()], depth=1)
    run(resolver, lambda q: "no box")
    resolved = resolver.resolved_rows()[0]
    assert resolved["reference_source"] == "gold-fallback" and resolved["problem"] == row()["problem"]


def test_a_question_answered_in_an_earlier_wave_is_not_asked_again():
    # the policy answers the lamp with its gold box, so the chair's question at depth 3 equals
    # the gold-reference question a depth-2 row asks in wave 0: answered once
    def exact(question):
        return answer((10, 10, 15, 15)) if question == "the lamp" else policy(question)

    deep = row(id_="d-3")
    shallow = row(id_="d-2", problem=CHAIN_OF_3[0]["problem"], reference_text=CHAIN_OF_3[0]["reference_text"],
                  chain=CHAIN_OF_3[1:])
    resolver = ReferenceResolver([deep, shallow], depth=3)
    asked = [q for wave in run(resolver, exact) for q in wave]
    assert asked.count("the chair near bbox=[10, 10, 15, 15]") == 1
    assert resolver.answered == len(asked)


def test_record_checks_its_answers_and_depth_is_positive():
    resolver = ReferenceResolver([row()], depth=1)
    queries = resolver.pending()
    with pytest.raises(ValueError, match="one answer for each question"):
        resolver.record(queries, [])
    with pytest.raises(RuntimeError, match="before every pending question"):
        resolver.resolved_rows()
    with pytest.raises(ValueError, match="depth must be >= 1"):
        ReferenceResolver([row()], depth=0)


def test_first_box_reads_the_shared_parser():
    assert first_box('<answer>[{"bbox_2d": [1.4, 2, 3, 4.6]}]</answer>') == (1.4, 2.0, 3.0, 4.6)
    assert first_box('[{"bbox_2d": [1, 2, 3, 4]}]') is None  # an <answer> tag is required
    assert first_box("<answer>" + "[" * 50000 + "</answer>") is None


def test_the_aux_pass_benchmark_runs_on_the_sample(capsys):
    """benchmarks/multi_round_aux.py's quick path (its figures are in benchmarks/RESULTS.md)."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "multi_round_aux.py"
    spec = importlib.util.spec_from_file_location("multi_round_aux", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--bench", "sample", "--steps", "3", "--prompts", "4", "--generations", "2"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["figures"]
    assert [f["depth"] for f in figures] == [1, 2, "full"]
    means = [f["questions_mean"] for f in figures]
    assert means == sorted(means) and 0 < means[0] <= 4  # at most one question per prompt at depth 1
