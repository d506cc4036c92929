"""What constrained decoding costs and buys: the ``hf`` adapter with and without the answer grammar.

For each batch size, the same first-round requests of the bundled sample are answered twice by
the ``hf`` adapter, unconstrained and under the preset's grammar (xgrammar logits processor),
and the script prints new tokens per second, rounds per second and the share of answers that
parse (the project's parser, the preset's rules). It also prints the grammar's one-off
compile time for the model's tokenizer.

CPU (tiny random Qwen2.5-VL, built locally)::

    python benchmarks/constrained_decoding.py --device cpu --batch-sizes 1 32

GPU (a real checkpoint, where a GPU is lent)::

    python benchmarks/constrained_decoding.py --device cuda --model lmsdss/RegionReasoner-7B \\
        --max-new-tokens 2048 --batch-sizes 1 32 --requests 64

Grammar compile time for every preset against a synthetic vocabulary of Qwen2.5-VL's size (random
ASCII strings; no download), as a stand-in for the real tokenizer::

    python benchmarks/constrained_decoding.py --compile-vocab 151000

Prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def first_round_requests(bench, n: int):
    from regiondial_bench.adapters.base import ImageInput, RoundRequest

    out = []
    dialogues = list(bench)
    for i in range(n):
        dialogue = dialogues[i % len(dialogues)]
        turn = dialogue.turns[0]
        image = ImageInput(path=bench.image_path(dialogue), width=dialogue.image.width, height=dialogue.image.height)
        out.append(RoundRequest(dialogue_id=f"{dialogue.dialogue_id}#{i}", turn=0, image=image,
                                question=turn.question, question_template=turn.question))
    return out


def measure(adapter, requests, batch_size: int) -> dict:
    from regiondial_bench.protocol import parse_answer

    adapter.generate(requests[:1])  # warm-up (kernels, first compile of the grammar's token masks)
    start = time.perf_counter()
    responses = []
    for i in range(0, len(requests), batch_size):
        responses.extend(adapter.generate(requests[i : i + batch_size]))
    elapsed = time.perf_counter() - start
    tokens = sum(r.extra.get("new_tokens", 0) for r in responses)
    parsed = [
        parse_answer(r.raw_text, frame=r.frame, image_size=q.image.require_size(),
                     require_answer_tag=r.require_answer_tag, max_regions=r.max_regions or 100).ok
        for r, q in zip(responses, requests, strict=True)
    ]
    return {"rounds": len(requests), "seconds": round(elapsed, 2), "new_tokens": tokens,
            "tokens_per_s": round(tokens / elapsed, 1), "rounds_per_s": round(len(requests) / elapsed, 3),
            "parse_share": round(sum(parsed) / len(parsed), 3)}


def compile_times(vocab_size: int) -> None:
    """Compile each preset's grammar for a synthetic ``vocab_size``-token vocabulary."""
    import random

    import xgrammar as xgr

    from regiondial_bench.adapters.presets import PRESETS
    from regiondial_bench.grammar import grammar_frame, response_grammar

    rng = random.Random(0)
    chars = [chr(c) for c in range(32, 127)]
    vocab = set(chars)
    while len(vocab) < vocab_size - 1:
        vocab.add("".join(rng.choice(chars) for _ in range(rng.randint(2, 9))))
    words = sorted(vocab) + ["<|im_end|>"]
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo(words, stop_token_ids=[len(words) - 1]), cache_enabled=False)
    for name, preset in PRESETS.items():
        grammar = response_grammar(preset, grammar_frame(preset, (640, 480)))
        start = time.perf_counter()
        compiler.compile_grammar(grammar.ebnf)
        print(f"{name}: frame {grammar.frame}, box_step {grammar.box_step}, {len(grammar.ebnf)} chars of EBNF, "
              f"compiled for a {len(words)}-token vocabulary in {time.perf_counter() - start:.2f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: a tiny random Qwen2.5-VL built in a temp folder)")
    parser.add_argument("--preset", default="regionreasoner-7b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=32, help="rounds per measurement (batch 1 uses a quarter)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-objects", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--compile-vocab", type=int, help="only time grammar compilation for a synthetic vocabulary")
    args = parser.parse_args()
    if args.compile_vocab:
        compile_times(args.compile_vocab)
        return

    from regiondial_bench.adapters import create_adapter
    from regiondial_bench.api import load_bench

    bench = load_bench("sample")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from regiondial_bench.testing import build_tiny_qwen2_5_vl

            model = str(build_tiny_qwen2_5_vl(Path(tmp) / "tiny-qwen"))
        common = {"preset": args.preset, "model": model, "device": args.device, "max_new_tokens": args.max_new_tokens}
        plain = create_adapter("hf", **common)
        start = time.perf_counter()
        constrained = create_adapter("hf", constrained=True, grammar={"max_objects": args.max_objects}, **common,
                                     _components=(plain.model, plain.processor))
        setup_s = time.perf_counter() - start
        grammar = constrained.constrained.grammar_for((640, 480))
        start = time.perf_counter()
        constrained._hf_grammars.compile(grammar)
        compile_s = time.perf_counter() - start
        print(f"model {model if args.model else 'tiny random Qwen2.5-VL'} on {args.device}; preset {args.preset}; "
              f"max_new_tokens {args.max_new_tokens}; grammar {len(grammar.ebnf)} chars, "
              f"compiled in {compile_s:.2f}s (tokenizer info + compiler {setup_s:.2f}s)")
        rows = []
        for batch_size in args.batch_sizes:
            n = max(batch_size, args.requests // 4 if batch_size == 1 else args.requests)
            requests = first_round_requests(bench, n)
            for name, adapter in (("unconstrained", plain), ("constrained", constrained)):
                row = {"batch_size": batch_size, "mode": name, **measure(adapter, requests, batch_size)}
                rows.append(row)
                print(f"batch {batch_size:>3} {name:>13}: {row['rounds']} rounds in {row['seconds']:.2f}s, "
                      f"{row['tokens_per_s']:.1f} new tokens/s, {row['rounds_per_s']:.3f} rounds/s, "
                      f"{row['new_tokens'] / row['rounds']:.0f} tokens/round, parse {row['parse_share']:.0%}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps({"compile_s": compile_s, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
