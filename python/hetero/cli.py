"""The ``hetero`` command: ``info``, ``explain``, ``conformance``, ``audit``,
``new-backend``, ``bench``, ``report`` and ``tune``. ``hetero COMMAND --help`` tells each
one's options."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Callable, NamedTuple

import torch

from . import shards

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float64": torch.float64, "fp64": torch.float64}


class ExplainCli(NamedTuple):
    """``hetero explain OP``'s options for one op (``OpSpec.cli``):
    ``add_arguments(parser)`` adds the op's own (``--shape`` and its features; ``--dtype``,
    ``--device`` and ``--backend`` are common), and ``call(options, make) -> (args,
    kwargs)`` builds the op's arguments, ``make(*shape)`` making a tensor of the chosen
    dtype and device."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    call: Callable[[argparse.Namespace, Callable], tuple[list, dict]]


def dims(text: str, count: int, names: str) -> list[int]:
    """``"64,32,128"`` (or ``64x32x128``) as ``count`` integers; ``names`` says which, for
    the error."""
    parts = [p for p in re.split(r"[,x×\s]+", text.strip()) if p]
    if len(parts) != count or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"--shape: expected {names}, got {text!r}")
    return [int(p) for p in parts]


def _print_info(data: dict) -> None:
    v = data["versions"]
    print(f"hetero {v['hetero']}  torch {v['torch']}  python {v['python']}")
    print(f"fallback policy: {data['fallback_policy']}")
    for device, order in data["default_order"].items():
        print(f"default order for {device}: {' > '.join(order)}")
    table = data["tuned_table"]
    print("tuned table: " + (f"{table['path']} ({table['entries']} entries)" if table
                             else "none (HETERO_TUNED=off)"))
    if data["tuned_table_ignored"]:
        print(f"  a table found is not used: {data['tuned_table_ignored']}")
    cal = data["calibration"]
    print(f"calibration: {'on' if cal['on'] else 'off'}; this process measured "
          f"{cal['buckets']} bucket(s) in {cal['seconds']} s"
          + "".join(f"\n  failed: {f}" for f in cal["failed"]))
    route = data["native_route"]
    print("enable() on cpu: " + ("the native route (hetero behind aten's CPU mm/bmm, flash "
                                 "attention, _scaled_mm/_int_mm)" if route["available"] else
                                 f"the function mode (no native route: {route['reason']})"))
    env_set = data["environment"]["set"]
    print("environment: " + (", ".join(f"{k}={v}" for k, v in env_set.items()) or "no HETERO_* set"))
    for op in data["ops"]:
        print(f"op {op['name']}: {', '.join(op['kernels']) or 'no available kernel'}")
    print()
    for b in data["backends"]:
        state = "available" if b["available"] else "unavailable"
        opt_in = "" if b["default"] in (True, None) else ", opt-in"
        print(f"{b['name']:<12} {state:<12} device={b['device_type']}{opt_in}  [{b['source']}]")
        if b["description"]:
            print(f"{'':<12} {b['description']}")
        for reason in b["reasons"]:
            print(f"{'':<12} why: {reason}")
        for key, value in b["details"].items():
            print(f"{'':<12} {key}: {value}")
        for k in b["kernels"]:
            s = k["support"]
            extra = {key: val for key, val in s.items()
                     if key not in ("dtypes", "device_types", "features", "limits")}
            extra.update(s.get("limits", {}))
            print(f"{'':<12} {k['op']:<10} {k['name']:<10} dtypes={','.join(s['dtypes'])}"
                  f" features={','.join(s['features']) or '-'}"
                  + "".join(f" {key}={val}" for key, val in extra.items())
                  + (" +backward" if k["backward"] else ""))


def _explain(args) -> int:
    """Exit status 0: a kernel would run; 1: none can; 2: bad options."""
    import hetero

    dtype, device = _DTYPES[args.dtype], torch.device(args.device)
    try:
        call, kwargs = args.explain_cli.call(
            args, lambda *shape: torch.empty(shape, dtype=dtype, device=device))
        if args.backend:
            kwargs["backend"] = [b.strip() for b in args.backend.split(",") if b.strip()]
        decision = hetero.explain(args.op, *call, **kwargs)
    except (argparse.ArgumentTypeError, TypeError, ValueError, RuntimeError) as exc:
        print(f"hetero explain: {exc}", file=sys.stderr)
        return 2
    print(decision)
    return 0 if decision.chosen else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hetero", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_info = sub.add_parser("info", help="backends, availability and declared support")
    p_info.add_argument("--json", action="store_true", help="print JSON")

    from .ops import registry as op_registry

    p_exp = sub.add_parser("explain", help="which kernel a call would run, and why")
    explained = p_exp.add_subparsers(dest="op", required=True, metavar="OP")
    for spec in op_registry.specs():
        if spec.cli is None:
            continue
        p_op = explained.add_parser(spec.name, help=f"a {spec.name} call")
        spec.cli.add_arguments(p_op)
        p_op.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
        p_op.add_argument("--device", default="cpu")
        p_op.add_argument("--backend", help="comma-separated priority list ('*' = default)")
        p_op.set_defaults(explain_cli=spec.cli)

    p_conf = sub.add_parser("conformance", help="judge a backend by the conformance suite")
    p_conf.add_argument("--backend", required=True, help="backend name (see `hetero info`)")
    p_conf.add_argument("--quick", action="store_true", help="the quick subset")
    p_conf.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR",
                        help="register this backend object or op spec first (repeatable)")
    p_conf.add_argument("--ops", help="comma-separated ops whose cases to run (default all)")
    p_conf.add_argument("--json", help="write the report as JSON here")
    p_conf.add_argument("--markdown", help="write the report as Markdown here")
    p_conf.add_argument("--timeout", type=float, default=300,
                        help="seconds before a case counts as hung (default 300)")
    p_conf.add_argument("--no-isolate", action="store_true",
                        help="run cases in this process (a crash ends the run)")
    p_conf.add_argument("--shard", metavar="I/N", help="run shard I of N of the case list "
                                                       "(merge the JSON files: hetero report)")

    p_audit = sub.add_parser("audit", help="run a model on a backend; find the calls that "
                                           "cost accuracy")
    p_audit.add_argument("model", metavar="MODEL_SPEC",
                         help="a preset (llama, mistral, qwen2, gemma, gpt2, bert: small "
                              "random-weight models), a local path or a cached model id")
    p_audit.add_argument("--backend", help="the backend to audit (default: the default order)")
    p_audit.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p_audit.add_argument("--tokens", type=int, default=32, help="input length (default 32)")
    p_audit.add_argument("--sample", type=int, default=1,
                         help="check one routed call in N (default: every call)")
    p_audit.add_argument("--train", action="store_true",
                         help="also compare every parameter's gradient")
    p_audit.add_argument("--json", help="write the report as JSON here")
    p_audit.add_argument("--markdown", help="write the report as Markdown here")
    p_audit.add_argument("--plot", help="write error/bound per layer and op here (PNG)")
    p_audit.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p_new = sub.add_parser("new-backend", help="write a new out-of-tree backend package "
                                               "(kernels, declared support, tests)")
    p_new.add_argument("name", help="the backend's name (a lower-case identifier)")
    p_new.add_argument("--into", default=".", help="directory to create it in (default .)")

    p_bench = sub.add_parser("bench", help="every backend vs PyTorch: checked, then timed")
    _bench_arguments(p_bench)
    p_bench.add_argument("--json", help="write the self-describing result file here")
    p_bench.add_argument("--csv", help="write the rows as CSV here")
    p_bench.add_argument("--plot", help="write the roofline and speed-up chart here (PNG)")

    p_report = sub.add_parser("report", help="merge result files into a Markdown report")
    p_report.add_argument("files", nargs="+", help="files written by `hetero bench --json` "
                                                   "or `hetero conformance --json`")
    p_report.add_argument("--markdown", help="write the report here (default: stdout only)")
    p_report.add_argument("--plot", help="write the rooflines and speed-up bars here (PNG)")

    p_tune = sub.add_parser("tune", help="write the fastest correct kernel per shape bucket "
                                         "for dispatch to use")
    _bench_arguments(p_tune)
    p_tune.add_argument("--from", dest="sources", nargs="+", metavar="FILE",
                        help="tune from these `hetero bench --json` results instead of running")
    p_tune.add_argument("--out", help="table path (default: $HETERO_TUNED, else this "
                                      "machine's, ~/.cache/hetero/tuned-<fingerprint>.json)")
    p_tune.add_argument("--replace", action="store_true",
                        help="start a new table instead of updating the one at --out")

    args = parser.parse_args(argv)
    if args.command in _COMMANDS:
        try:
            return _COMMANDS[args.command](args)
        except ValueError as exc:  # bad options or files: one line, no traceback
            print(f"hetero {args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command == "explain":
        return _explain(args)
    from .info import info

    data = info()
    print(json.dumps(data, indent=2)) if args.json else _print_info(data)
    return 0


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from .ops import registry as op_registry

    benchmarked = [s.name for s in op_registry.specs() if s.bench is not None]
    p.add_argument("op", nargs="?", default="all", choices=[*benchmarked, "all"])
    p.add_argument("--backends", help="comma-separated backends; `torch` (PyTorch, the "
                                      "baseline) is always added (default: every available "
                                      "backend for the device, except the reference oracle)")
    p.add_argument("--dtypes", help="comma-separated dtypes (default: those the benchmarked "
                                    "backends declare, of float32, bfloat16, float16)")
    p.add_argument("--shapes", default="llm",
                   help="suite: llm (Llama-3-8B and Qwen-7B layers, prefill and decode), "
                        "square, or a JSON/YAML file mapping op names to cases (default llm)")
    p.add_argument("--quick", action="store_true", help="smaller and fewer cases")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--budget", type=float, help="seconds of timing per participant and case "
                                                "beyond the minimum rounds")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--shard", metavar="I/N", help="run shard I of N of the cases (merge the "
                                                  "JSON files with hetero report)")


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _run_bench(args) -> dict:
    from . import bench

    plan = bench.plan(args.op, device=args.device, backends=_split(args.backends),
                      dtypes=_split(args.dtypes), shapes=args.shapes, quick=args.quick,
                      budget_s=args.budget, shard=shards.parse(args.shard))
    return bench.run(plan, progress=not args.quiet, command=["hetero", *sys.argv[1:]])


def _bench(args) -> int:
    """Exit status 0: every result correct, 1: some result wrong, 2: could not run."""
    from .bench import output, plots

    doc = _run_bench(args)
    print(output.table(doc))
    for path, write in ((args.json, output.write_json), (args.csv, output.write_csv),
                        (args.plot, lambda d, p: plots.plot([d], p))):
        if path:
            print(f"wrote {write(doc, path)}")
    return 1 if any(r["status"] == "wrong" for r in doc["rows"]) else 0


def _report(args) -> int:
    """Bench results: the merged report (exit 0). Conformance reports: the merged verdict
    of each sweep (exit 0 when every one is conformant, 1 otherwise)."""
    from .bench import output, plots, report
    from .conformance import merge

    loaded = [_load_json(path) for path in args.files]
    sweeps = merge.merge([d for d in loaded if merge.is_report(d)])
    docs = [output.load(path) for path, d in zip(args.files, loaded) if not merge.is_report(d)]
    text = "\n".join(([report.markdown(docs)] if docs else []) +
                     ([merge.markdown(sweeps)] if sweeps else []))
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
        print(f"wrote {args.markdown}")
    if args.plot and docs:
        print(f"wrote {plots.plot(report.merge_shards(docs)[0], args.plot)}")
    return 0 if all(s["verdict"] == "conformant" for s in sweeps) else 1


def _load_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a bench or conformance result ({exc})") from None


def _tune(args) -> int:
    from . import env, tuned
    from .bench import output, tune

    docs = [output.load(p) for p in args.sources] if args.sources else [_run_bench(args)]
    setting = env.settings().tuned
    path = args.out or (setting if setting not in (None, "off") else tuned.default_path())
    old = None
    if not args.replace and os.path.exists(path):
        old = tuned.load(path)
        if old.foreign():
            print(f"{path}: not merged, {old.foreign()}")
            old = None
    new = tune.table_from_runs(docs)
    table = tune.merged(old, new)
    table.save(path)
    for entry in new.entries.values():
        print(entry.describe())
    print(f"wrote {len(new)} entries ({len(table)} in all) to {path}; dispatch uses them "
          f"for calls that ask for no backend (HETERO_TUNED=off disables)")
    return 0


def _conformance(args) -> int:
    """Exit status 0: conformant, 1: not conformant, 2: not run (the backend is
    unavailable here, or bad options), 3: incomplete (a declared item never exercised)."""
    from . import conformance

    try:
        report = conformance.run(args.backend, quick=args.quick, plugins=args.plugin,
                                 isolate=not args.no_isolate, timeout=args.timeout,
                                 ops=_split(args.ops), shard=shards.parse(args.shard))
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"hetero conformance: {exc}", file=sys.stderr)
        return 2
    text = report.markdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.as_dict(), f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(text)
    return conformance.EXIT_STATUS[report.verdict]


def _audit(args) -> int:
    """Exit status 0: every checked call within its bound, 1: some out of bound, 2: could
    not run (bad options, a model that does not load or raises)."""
    from .auditing import audit, presets

    if args.tokens < 1:
        raise ValueError(f"--tokens: expected a positive int, got {args.tokens}")
    model = presets.build(args.model)
    try:
        report = audit(model, presets.example_inputs(model, args.tokens),
                       backend=args.backend, dtype=args.dtype, train=args.train,
                       sample=args.sample, progress=not args.quiet, name=args.model)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    print(report.markdown())
    for path, write in ((args.json, report.write_json), (args.plot, report.plot)):
        if path:
            print(f"wrote {write(path)}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown())
        print(f"wrote {args.markdown}")
    return 1 if report.out_of_bound() else 0


def _new_backend(args) -> int:
    from .scaffold import new_backend

    root = new_backend(args.name, args.into)
    root = root if root.is_absolute() else f"./{root}"  # a path to pip, not a name on PyPI
    print(f"wrote {root}: a backend named {args.name!r} (plain-torch kernels to replace). "
          f"Next:\n  pip install {root}\n  pytest {root}/tests\n"
          f"  hetero conformance --backend {args.name}")
    return 0


_COMMANDS = {"conformance": _conformance, "bench": _bench, "report": _report, "tune": _tune,
             "new-backend": _new_backend, "audit": _audit}


def run() -> int:
    """Console-script entry point: ``main()``, quiet when its output pipe closes early."""
    try:
        return main()
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `hetero info | head`; nothing left to report to
        return 0


if __name__ == "__main__":
    sys.exit(run())
