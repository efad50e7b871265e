"""``hetero explain attention``'s options: ``--shape B,H,S,D`` (the query side) and the
call's features."""

from __future__ import annotations

import torch

from ...cli import ExplainCli, dims


def _add_arguments(parser) -> None:
    parser.add_argument("--shape", required=True, help="B,H,S,D (query side)")
    parser.add_argument("--kv-heads", type=int, help="key/value heads (GQA)")
    parser.add_argument("--kv-len", type=int, help="key/value length Sk")
    parser.add_argument("--head-dim-v", type=int, help="value head dim")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--mask", choices=["bool", "additive"])


def _call(options, make):
    b, h, s, d = dims(options.shape, 4, "B,H,S,D")
    hkv, sk, dv = options.kv_heads or h, options.kv_len or s, options.head_dim_v or d
    q = make(b, h, s, d)
    mask = None
    if options.mask == "bool":
        mask = torch.ones(s, sk, dtype=torch.bool, device=q.device)
    elif options.mask == "additive":
        mask = make(s, sk).zero_()
    return [q, make(b, hkv, sk, d), make(b, hkv, sk, dv)], {
        "causal": options.causal, "attn_mask": mask}


SPEC = ExplainCli(_add_arguments, _call)
