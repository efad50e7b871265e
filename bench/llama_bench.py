"""A transformers Llama decoder (GQA, random weights) on this CPU: forward with
``hetero.enable()`` against plain PyTorch, interleaved in one process.

Each row: median seconds of the forward pass with and without hetero (rounds alternate
so drift hits both), ratio = PyTorch time / hetero time, the model's GEMM and attention
GFLOP (counted by ``hetero.stats()``), the share of them hetero served, and GFLOP/s.
Before timing, the logits of both runs are checked against the same model in float64:
hetero's error must stay within twice PyTorch's plus a small floor, or the run aborts.

    python bench/llama_bench.py [--quick] [--dtypes bfloat16,float32] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys

import torch
from cpu_bench import interleaved, write_json
from transformers import LlamaConfig, LlamaForCausalLM

import hetero
from hetero.backends import cpu
from hetero.testing import flash_rule_bound

# A Llama layer stack shrunk to fit a 2-core machine: Llama-style widths (head dim 64,
# 4 query heads per KV head, SwiGLU 2.75x, a 32k vocabulary), 4 layers.
MODEL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
             num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
             attn_implementation="sdpa")
QUICK = dict(MODEL, num_hidden_layers=2, vocab_size=8000)


def check(model, ids, dtype):
    """Abort unless hetero's logits are as close to float64 as PyTorch's (x2 + floor)."""
    exact = copy.deepcopy(model).double()(ids).logits
    plain = model(ids).logits.double()
    with hetero.enabled():
        ours = model(ids).logits.double()
    ours_err = (ours - exact).abs().max().item()
    torch_err = (plain - exact).abs().max().item()
    floor = (1e-5 if dtype is torch.float32 else 2.0**-8) * exact.abs().max().item()
    if ours_err > flash_rule_bound(exact, plain, floor=floor):
        sys.exit(f"{dtype}: hetero's logits are off: error {ours_err:.3g} vs PyTorch's "
                 f"{torch_err:.3g}")
    return ours_err, torch_err


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, 8k vocabulary")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated")
    parser.add_argument("--seq", type=int, default=512, help="tokens per forward")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the rows and the environment to this file")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else MODEL
    env = {"cpu": platform.processor() or platform.machine(), "threads": cpu.num_threads(),
           "torch": torch.__version__, "model": config, "seq": args.seq}
    print(f"# {env}", flush=True)
    print("| dtype | torch s | hetero s | hetero / torch | GFLOP | served by hetero | "
          "torch GFLOP/s | hetero GFLOP/s | logits error hetero / torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype).eval()
        ids = torch.randint(0, config["vocab_size"], (1, args.seq))
        with torch.no_grad():
            ours_err, torch_err = check(model, ids, dtype)
            hetero.reset_stats()
            with hetero.enabled():
                model(ids)
            counted = hetero.stats()

            def with_hetero():
                with hetero.enabled():
                    model(ids)

            t_torch, t_hetero = interleaved([lambda: model(ids), with_hetero], args.rounds)
        gflop = (counted.flops() + counted.flops(served=False)) / 1e9
        row = {"dtype": name, "torch_s": t_torch, "hetero_s": t_hetero,
               "speedup": t_torch / t_hetero, "gflop": gflop,
               "served_fraction": counted.served_fraction(),
               "logits_error": {"hetero": ours_err, "torch": torch_err}}
        rows.append(row)
        print(f"| {name} | {t_torch:.2f} | {t_hetero:.2f} | **{row['speedup']:.2f}×** | "
              f"{gflop:.1f} | {100 * row['served_fraction']:.1f}% | {gflop / t_torch:.1f} | "
              f"{gflop / t_hetero:.1f} | {ours_err:.3g} / {torch_err:.3g} |", flush=True)
    write_json(args.json, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
