"""A transformers Llama decoder (GQA, random weights) on this CPU: with ``hetero.enable()``
against plain PyTorch, interleaved in one process, for three workloads:

- ``forward``: one forward pass over ``--seq`` tokens (no grad);
- ``train``: one training step (forward, loss, backward) of a smaller model (hidden 512)
  over a batch of 2 × ``--train-seq`` tokens;
- ``generate``: ``generate()`` of ``--new-tokens`` tokens (greedy, KV cache) after a
  ``--prompt``-token prompt.

Each row: median seconds with and without hetero (rounds alternate so drift hits both),
ratio = the median over rounds of PyTorch time / hetero time (the two calls of a round
run back to back), with a 95% bootstrap interval of that median (``--rounds`` 15 or more
for a tight one), the GEMM and attention GFLOP counted by
``hetero.stats()`` and the share of them hetero's own kernels served. Before timing,
hetero's result is checked against the same model in float64: the forward's logits and
the training step's loss within twice PyTorch's error plus a small floor (the run aborts
otherwise); for ``generate``, whether the tokens equal PyTorch's is reported.

    python bench/llama_bench.py [--quick] [--small] [--function-mode]
                                [--dtypes bfloat16,float32]
                                [--workloads forward,train,generate] [--json FILE]

``hetero.enabled()`` routes natively on the CPU (:mod:`hetero.native_route`);
``--function-mode`` times ``hetero.enabled(native=False)`` instead. ``--small`` runs every
workload on the training step's model (hidden 512). ``--fp8-weights`` (``generate`` only)
stores every decoder layer's Linear weight in float8_e4m3fn and multiplies through
``torch._scaled_mm`` (:class:`Fp8Linear`), the call ``enable()`` routes to
``hetero.scaled_gemm``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys

import numpy as np
import torch
from cpu_bench import write_json
from transformers import LlamaConfig, LlamaForCausalLM

import hetero
from hetero import env as hetero_env
from hetero.bench import machine, timing
from hetero.testing import flash_rule_bound

# A Llama layer stack shrunk to fit a 2-core machine: Llama-style widths (head dim 64,
# 4 query heads per KV head, SwiGLU 2.75x, a 32k vocabulary), 4 layers.
MODEL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
             num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
             attn_implementation="sdpa")
TRAIN = dict(MODEL, hidden_size=512, intermediate_size=1408, num_attention_heads=8,
             num_key_value_heads=2)
QUICK = {"vocab_size": 8000, "num_hidden_layers": 2}
FLOOR = {torch.float32: 1e-5, torch.bfloat16: 2.0**-8}
WORKLOADS = ("forward", "train", "generate")
ENABLE: dict = {}  # hetero.enabled()'s arguments (--function-mode)


class Fp8Linear(torch.nn.Module):
    """A bias-free Linear with its weight in float8_e4m3fn, one scale per output row; each
    call quantizes its input per row and multiplies by ``torch._scaled_mm`` (row-wise
    recipe), returning the Linear's dtype."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448  # e4m3fn's max
        self.weight = (w / scale).to(torch.float8_e4m3fn)  # (out, in)
        self.weight_scale = scale.t().contiguous()  # (1, out)
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448
        quantized = (rows / scale).to(torch.float8_e4m3fn)
        y = torch._scaled_mm(quantized, self.weight.t(), scale, self.weight_scale,
                             out_dtype=self.out_dtype)
        return y.reshape(*x.shape[:-1], y.shape[-1])


def make_model(config: dict, dtype: torch.dtype, fp8_weights: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype)
    if fp8_weights:
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, torch.nn.Linear) and child.bias is None:
                        setattr(parent, name, Fp8Linear(child))
    return model


def within_rule(ours, plain, exact, dtype, what: str) -> dict:
    """Abort unless hetero's ``ours`` is as close to float64 as PyTorch's (x2 + floor)."""
    ours_err = (ours.double() - exact).abs().max().item()
    torch_err = (plain.double() - exact).abs().max().item()
    floor = FLOOR[dtype] * exact.abs().max().item()
    if ours_err > flash_rule_bound(exact, plain.double(), floor=floor):
        sys.exit(f"{dtype} {what}: hetero is off: error {ours_err:.3g} vs PyTorch's "
                 f"{torch_err:.3g}")
    return {f"{what} error": f"{ours_err:.3g} (torch {torch_err:.3g})"}


# ---------------------------------------------------------------- the workloads
# Each returns (plain call, hetero call, a note on the check) for one model and dtype.

def forward(config, dtype, args):
    model = make_model(config, dtype).eval()
    ids = torch.randint(0, config["vocab_size"], (1, args.seq))
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(ids).logits
        plain = model(ids).logits
        with hetero.enabled(**ENABLE):
            ours = model(ids).logits
    errors = within_rule(ours, plain, exact, dtype, "logits")

    def run():
        with torch.no_grad():
            model(ids)
    return run, errors


def train(config, dtype, args):
    model = make_model(config, dtype).train()
    ids = torch.randint(0, config["vocab_size"], (2, args.train_seq))

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(ids, labels=ids).loss
        loss.backward()
        return loss.detach()

    def loss64(m):  # transformers computes its loss in float32 even for a float64 model
        logits = m(ids).logits.double()
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1),
                                                 ids[:, 1:].flatten()).detach()

    exact = loss64(copy.deepcopy(model).double())
    plain = loss64(model)
    with hetero.enabled(**ENABLE):
        ours = loss64(model)
        step()  # and its backward runs
    return step, within_rule(ours, plain, exact, dtype, "loss")


def generate(config, dtype, args):
    model = make_model(config, dtype, args.fp8_weights).eval()
    ids = torch.randint(0, config["vocab_size"], (1, args.prompt))
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
              do_sample=False, pad_token_id=0)

    def run():
        with torch.no_grad():
            return model.generate(ids, **kw)
    plain = run()
    with hetero.enabled(**ENABLE):
        ours = run()
    return run, {"tokens equal to torch's": bool(torch.equal(plain, ours))}


def median_interval(samples: np.ndarray, resamples: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median of ``samples``."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(samples, (resamples, len(samples))), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def measure(workload: str, config: dict, dtype: torch.dtype, args) -> dict:
    run, check = {"forward": forward, "train": train, "generate": generate}[workload](
        config, dtype, args)
    hetero.reset_stats()
    with hetero.enabled(**ENABLE):
        run()
    counted = hetero.stats()

    def with_hetero():
        with hetero.enabled(**ENABLE):
            run()

    with_hetero()  # warm-up, as the check was PyTorch's
    plain, ours = timing.interleaved([run, with_hetero], torch.device("cpu"), budget_s=0.0,
                                     min_rounds=args.rounds, max_rounds=args.rounds)
    ratios = np.array(plain.seconds) / np.array(ours.seconds)
    gflop = (counted.flops() + counted.flops(served=False)) / 1e9
    return {"workload": workload, "torch_s": plain.median, "hetero_s": ours.median,
            "speedup": float(np.median(ratios)), "speedup_95": median_interval(ratios),
            "gflop": gflop,
            "served_fraction": counted.served_fraction(), "check": check,
            "served": {op: {k: c.calls for k, c in per.items()}
                       for op, per in counted.served.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, 8k vocabulary")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated")
    parser.add_argument("--workloads", default="forward", help="comma-separated: "
                        + ", ".join(WORKLOADS))
    parser.add_argument("--seq", type=int, default=512, help="forward: tokens")
    parser.add_argument("--train-seq", type=int, default=256, help="train: tokens per sequence")
    parser.add_argument("--prompt", type=int, default=32, help="generate: prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="generate: new tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--function-mode", action="store_true",
                        help="hetero.enabled(native=False): the torch function mode")
    parser.add_argument("--small", action="store_true",
                        help="every workload on the small (hidden 512) model")
    parser.add_argument("--fp8-weights", action="store_true",
                        help="generate: decoder Linears in float8_e4m3fn via torch._scaled_mm")
    parser.add_argument("--json", help="write the rows and the environment to this file")
    args = parser.parse_args(argv)
    ENABLE.update(native=False) if args.function_mode else ENABLE.clear()
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"--workloads: unknown {unknown}; expected some of {list(WORKLOADS)}")
    if args.fp8_weights and workloads != ["generate"]:
        parser.error("--fp8-weights: only with --workloads generate (the other workloads "
                     "check against a float64 model, which an fp8 one cannot match)")
    threads = hetero_env.settings().num_threads or torch.get_num_threads()
    env = {"cpu": machine.describe(torch.device("cpu"), threads)["cpu"], "threads": threads,
           "torch": torch.__version__, "python": platform.python_version(),
           "models": {"forward/generate": MODEL, "train": TRAIN}, "quick": args.quick,
           "seq": args.seq, "train_seq": args.train_seq, "prompt": args.prompt,
           "new_tokens": args.new_tokens, "enable": dict(ENABLE), "small": args.small,
           "fp8_weights": args.fp8_weights}
    print(f"# {env['cpu']}, {threads} threads, torch {torch.__version__}", flush=True)
    print("| workload | dtype | torch s | hetero s | torch / hetero (95% interval) | GFLOP | "
          "served by hetero | check |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for workload in workloads:
        config = TRAIN if workload == "train" or args.small else MODEL
        config = dict(config, **QUICK) if args.quick else config
        for name in args.dtypes.split(","):
            row = dict(measure(workload, config, getattr(torch, name), args), dtype=name)
            rows.append(row)
            print(f"| {workload} | {name} | {row['torch_s']:.3f} | {row['hetero_s']:.3f} | "
                  f"**{row['speedup']:.2f}×** ({row['speedup_95'][0]:.2f}–"
                  f"{row['speedup_95'][1]:.2f}) | {row['gflop']:.1f} | "
                  f"{100 * row['served_fraction']:.1f}% | "
                  f"{'; '.join(f'{k}: {v}' for k, v in row['check'].items())} |", flush=True)
    write_json(args.json, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
