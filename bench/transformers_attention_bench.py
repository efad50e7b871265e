"""A transformers Llama (random weights) with ``attn_implementation="hetero"`` against
the same model with PyTorch's SDPA, interleaved in one process, on this CPU:

- ``generate``: greedy ``generate()`` of ``--new-tokens`` tokens for a batch of prompts
  of different lengths (left-padded), "hetero" (varlen_attention) vs "sdpa";
- ``batch``: continuous batching, ``model.generate_batch`` of the same prompts,
  "paged|hetero" (prefill on varlen_attention, decode on paged_attention over
  transformers' block table) vs "sdpa".

Each row: median seconds of ``--rounds`` alternating rounds, the ratio SDPA time /
hetero time, and whether the generated tokens are equal.

    python bench/transformers_attention_bench.py [--dtype bfloat16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from hetero.fingerprint import cpu_flags, cpu_model
from hetero.integrations import transformers as integration

CONFIG = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
              num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048)


def model(implementation: str, dtype: torch.dtype) -> LlamaForCausalLM:
    torch.manual_seed(0)
    built = LlamaForCausalLM(LlamaConfig(**CONFIG)).to(dtype).eval()
    built.set_attn_implementation(implementation)
    return built


def alternate(runs: dict, rounds: int) -> dict:
    """Median seconds of each named run, rounds alternating; and each run's last result."""
    seconds = {name: [] for name in runs}
    results = {}
    for name, run in runs.items():  # warm-up
        results[name] = run()
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompts", default="24,96,160,40,200,64,128,16")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    integration.register()
    flags = [f for f in cpu_flags() if f.startswith(("avx512", "amx"))]
    print(f"# {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{' '.join(flags)}")
    gen = torch.Generator().manual_seed(0)
    lengths = [int(n) for n in args.prompts.split(",")]
    prompts = [torch.randint(0, CONFIG["vocab_size"], (n,), generator=gen).tolist()
               for n in lengths]
    settings = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=False,
                                eos_token_id=-1, pad_token_id=0)
    rows = []

    # generate(): a left-padded batch
    width = max(lengths)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    models = {name: model(name, dtype) for name in ("sdpa", "hetero")}
    seconds, results = alternate({name: (lambda m=m: m.generate(
        ids, attention_mask=mask, generation_config=settings)) for name, m in models.items()},
        args.rounds)
    rows.append(("generate", seconds, torch.equal(results["sdpa"], results["hetero"])))

    # continuous batching
    models = {name: model(name, dtype) for name in ("sdpa", "paged|hetero")}

    def batch(m):
        out = m.generate_batch(prompts, generation_config=settings)
        return [out[k].generated_tokens for k in sorted(out)]

    seconds, results = alternate({name: (lambda m=m: batch(m)) for name, m in models.items()},
                                 args.rounds)
    rows.append(("generate_batch", seconds, results["sdpa"] == results["paged|hetero"]))

    print("| workload | sdpa s | hetero s | sdpa / hetero | tokens equal |")
    print("|---|---|---|---|---|")
    for name, s, equal in rows:
        ours = s.get("hetero", s.get("paged|hetero"))
        print(f"| {name} {args.dtype} | {s['sdpa']:.2f} | {ours:.2f} | "
              f"**{s['sdpa'] / ours:.2f}×** | {equal} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "flags": flags, "rows": [
                {"workload": n, "seconds": s, "tokens_equal": e} for n, s, e in rows]}, f,
                indent=1)


if __name__ == "__main__":
    main()
