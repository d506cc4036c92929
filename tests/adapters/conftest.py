"""Session fixtures: tiny random models built once from configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from regiondial_bench.adapters.base import ImageInput, RoundRequest

SAMPLE = Path(__file__).resolve().parents[2] / "regiondial_bench" / "data" / "sample"


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    from regiondial_bench.testing import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen"), seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    from regiondial_bench.testing import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3"), seed=0)


@pytest.fixture(scope="session")
def tiny_internvl(tmp_path_factory) -> Path:
    from regiondial_bench.testing import build_tiny_internvl

    return build_tiny_internvl(tmp_path_factory.mktemp("tiny-internvl"), seed=0)


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory) -> Path:
    from regiondial_bench.testing import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"), seed=0)


@pytest.fixture(scope="session")
def sample_bench():
    from regiondial_bench.api import load_bench

    return load_bench("sample")


def first_turn_requests(bench, n: int) -> list[RoundRequest]:
    """Round-1 requests of the first ``n`` dialogues (no references needed)."""
    requests = []
    for dialogue in list(bench)[:n]:
        turn = dialogue.turns[0]
        image = ImageInput(path=bench.image_path(dialogue), width=dialogue.image.width, height=dialogue.image.height)
        requests.append(RoundRequest(dialogue_id=dialogue.dialogue_id, turn=0, image=image,
                                     question=turn.question, question_template=turn.question))
    return requests
