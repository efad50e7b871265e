"""What ``hetero.audit`` costs relative to a plain forward of the same model.

    python bench/audit_cost.py [--preset llama] [--tokens 32] [--repeats 5]

Times (best of ``--repeats``) one plain ``torch.no_grad()`` forward of a preset model,
an audit on the ``cpu`` backend (every call within its bound: no attribution runs) and
an audit on a backend that keeps GEMM sums in bf16 for K > 500 (calls out of bound:
attribution re-runs), and prints the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

import hetero
from hetero import tuned
from hetero.auditing import presets


def _lossy_gemm(args):
    acc = torch.zeros(args.out.shape)
    for k0 in range(0, args.a.shape[-1], 32):
        acc = (acc + args.a[..., k0:k0 + 32].float() @ args.b[..., k0:k0 + 32, :].float())
        if args.a.shape[-1] > 500:
            acc = acc.bfloat16().float()
    args.out.copy_(args.alpha * acc + (args.beta * args.bias if args.bias is not None else 0))


class _Lossy(hetero.Backend):
    name, device_type, api_version, default = "lossy_k", "cpu", hetero.PLUGIN_API, False

    def kernels(self):
        return [hetero.Kernel("gemm", "k", _lossy_gemm, hetero.Support(
            dtypes=frozenset({torch.float32}), features=frozenset({"bias", "batch"})))]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="llama", choices=sorted(presets.PRESETS))
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = presets.build(args.preset)
    inputs = presets.example_inputs(model, args.tokens)
    hetero.register_backend(_Lossy())

    def forward():
        with torch.no_grad():
            model(**inputs)

    plain = best(forward, args.repeats)
    clean = best(lambda: hetero.audit(model, inputs, backend="cpu", progress=False),
                 args.repeats)
    bad = best(lambda: hetero.audit(model, inputs, backend="lossy_k", progress=False),
               args.repeats)
    print(f"# {tuned.device_name(torch.device('cpu'))}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; {args.preset}, {args.tokens} tokens")
    print(f"plain forward {plain * 1e3:.1f} ms; audit, every call within bound "
          f"{clean * 1e3:.0f} ms ({clean / plain:.0f}×); audit with calls out of bound "
          f"{bad * 1e3:.0f} ms ({bad / plain:.0f}×)")


if __name__ == "__main__":
    main()
