"""Training-test helpers: load the trainer script, script the policy's text, spy on the rewards."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "train_reference" / "grpo_regionreasoner.py"
SMOKE = ROOT / "train_reference" / "configs" / "cpu_smoke.yaml"

# a complete, well-formed response (every tag, valid answer JSON): a high reward
GOOD = (
    "<scene>a kitchen with a cat on a table near a lamp</scene> "
    "<focus>a white cat with a toy on a wooden chair beside a lamp</focus> "
    "<think>the reference bbox holds a cat; the target is to the left of the cat</think> "
    '<answer>[{"bbox_2d": [120, 140, 260, 300], "point_2d": [190, 220]}]</answer>'
)
BAD = "no"  # no tags, no answer: a low reward


@pytest.fixture(scope="module")
def grpo():
    spec = importlib.util.spec_from_file_location("grpo_regionreasoner", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grpo_regionreasoner"] = module
    spec.loader.exec_module(module)
    return module


def script_policy(model, tokenizer, answer):
    """Replace ``model.generate`` by a scripted policy: row ``i`` of a call answers ``answer(i, greedy)``.

    The completions then go through TRL's own post-processing (EOS masking, decoding) and the
    policy's real forward pass scores them, so the GRPO loss and its gradients are the real ones.
    ``greedy`` is true for calls with ``do_sample=False`` (the multi-round reference step).
    """
    import torch

    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    calls: list[dict] = []

    def generate(input_ids=None, attention_mask=None, generation_config=None, **kwargs):
        greedy = generation_config is not None and not generation_config.do_sample
        prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
        rows = [
            tokenizer(answer(i, greedy), add_special_tokens=False)["input_ids"] + [eos]
            for i in range(len(prompts))
        ]
        calls.append({"greedy": greedy, "prompts": prompts})
        width = max(len(r) for r in rows)
        completion = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=input_ids.device)
        return torch.cat([input_ids, completion], dim=1)

    model.generate = generate
    return calls


def prompt_text(prompt) -> str:
    """The user text of a (possibly multimodal) conversational prompt."""
    content = prompt[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def spy_rewards(monkeypatch):
    """Record the columns every reward call receives (wraps the first reward component)."""
    from regiondial_bench.training import rewards

    seen: list[dict] = []
    original = rewards.reward_functions

    def reward_functions(profile="released"):
        functions = original(profile)
        first = functions[0]

        def spied(prompts, completions, **columns):
            seen.append(
                {
                    "step": columns["trainer_state"].global_step,
                    "id": list(columns["id"]),
                    "problem": list(columns["problem"]),
                    "prompt": [prompt_text(p) for p in prompts],
                }
            )
            return first(prompts, completions, **columns)

        spied.__name__ = first.__name__
        return [spied, *functions[1:]]

    monkeypatch.setattr(rewards, "reward_functions", reward_functions)
    return seen
