"""scaled_gemm's conformance cases, as data, and the tensors for each.

Every input dtype × scale recipe on awkward shapes (1, primes, K not a multiple of 128
where the recipe allows it, empty), ``b`` row-major or as ``w.t()`` (the layout
``torch._scaled_mm`` wants), ``a`` transposed; features bias, float16/float32/int32
outputs, NaN encodings, the largest finite values (``saturation``: nothing may overflow
to inf in a float32 result) and zero and negative scales (``signs``).

A case's ``params`` are ``M, N, K``; its features the recipe (``row``, ``block``;
tensor-wise has none) plus the others.
"""

from __future__ import annotations

import torch

from ...conformance.cases import MAX_ELEMENTS, Case, ConformanceSpec, case_seed, declared_sizes
from .api import BLOCK, FP8_DTYPES, INPUT_DTYPES, block_count
from .numerics import FORMATS

_NAMES = {dtype: str(dtype).removeprefix("torch.") for dtype in INPUT_DTYPES}
DTYPES = tuple(_NAMES.values())

# (M, N, K, quick): 1, primes, K not a multiple of 8/16/128, empty.
# K = 1031 spans several of the 512-deep slices int8 sums are made exact in; M = 37 is
# past the decode-shaped sizes.
SHAPES = [(1, 1, 1, True), (1, 17, 5, False), (13, 7, 5, True), (31, 37, 29, False),
          (3, 5, 131, True), (0, 5, 3, False), (4, 6, 0, True), (5, 33, 1031, True),
          (37, 19, 1031, False)]
# The block recipe needs K a multiple of 128; N and M need not be of anything.
BLOCK_SHAPES = [(1, 1, 128, True), (5, 7, 128, False), (13, 131, 256, True),
                (2, 129, 384, False), (20, 131, 640, True)]
LAYOUTS = ("contiguous", "b.T", "a.T")
FEATURES = (("bias",), ("float16_out",), ("float32_out",), ("nan",), ("saturation",),
            ("signs",), ("bias", "row"))


def numeric_cases() -> list[Case]:
    out = []
    for name in DTYPES:
        for recipe, shapes in (("tensor", SHAPES), ("row", SHAPES), ("block", BLOCK_SHAPES)):
            features = () if recipe == "tensor" else (recipe,)
            for m, n, k, quick in shapes:
                for layout in LAYOUTS:
                    out.append(Case("scaled_gemm", name, {"M": m, "N": n, "K": k}, layout,
                                    features, quick=quick and layout == "b.T"))
        for features in FEATURES:
            if "nan" in features and name == "int8":
                continue
            out.append(Case("scaled_gemm", name, {"M": 13, "N": 7, "K": 29}, "b.T",
                            features, quick=True))
        if name == "int8":  # torch._int_mm: no scales, an exact int32 result
            for m, n, k, quick in SHAPES:
                out.append(Case("scaled_gemm", name, {"M": m, "N": n, "K": k}, "b.T",
                                ("int32_out",), quick=quick))
    return out


def quantized(shape: tuple, dtype: torch.dtype, seed: int, layout_t: bool = False):
    """Random values of ``dtype``: int8 uniform over its range, fp8 normal draws times
    4 (spanning its subnormals to tens). ``layout_t``: made transposed and viewed back."""
    gen = torch.Generator().manual_seed(seed)
    stored = shape[::-1] if layout_t else shape
    if dtype is torch.int8:
        t = torch.randint(-128, 128, stored, generator=gen, dtype=torch.int8)
    else:
        t = (torch.randn(stored, generator=gen) * 4).to(dtype)
    return t.t() if layout_t else t


def scales(recipe: str, m: int, n: int, k: int, seed: int, signs: bool = False):
    """Float32 scales of ``recipe`` in [0.25, 2); with ``signs``, some zero or negative."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"tensor": ((1,), (1,)), "row": ((m, 1), (1, n)),
              "block": ((m, block_count(k)), (block_count(k), block_count(n)))}[recipe]
    made = []
    for shape in shapes:
        s = torch.rand(shape, generator=gen) * 1.75 + 0.25
        if signs:
            s = s * torch.tensor([1.0, -1.0, 0.0, -0.5])[torch.arange(s.numel()) % 4
                                                          ].reshape(shape)
            if s.numel() == 1:
                s = -s if s.item() else s  # tensor-wise: a negative scale
        made.append(s)
    return made


def inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, case_seed(case)
    m, n, k = p["M"], p["N"], p["K"]
    a = quantized((m, k), dtype, seed, layout_t=case.layout == "a.T")
    b = quantized((k, n), dtype, seed + 1, layout_t=case.layout == "b.T")
    recipe = next((r for r in ("row", "block") if r in case.features), "tensor")
    kwargs = {}
    if "int32_out" in case.features:
        return (a, b, None, None), {"out_dtype": torch.int32}
    scale_a, scale_b = scales(recipe, m, n, k, seed + 2, "signs" in case.features)
    if "float16_out" in case.features and dtype is torch.int8:
        scale_a = scale_a / 64  # int8 sums reach 1e5, beyond float16's 65504
    if "bias" in case.features:
        gen = torch.Generator().manual_seed(seed + 3)
        kwargs["bias"] = torch.randn(n, generator=gen).to(torch.bfloat16)
    for feature, out_dtype in (("float16_out", torch.float16), ("float32_out", torch.float32)):
        if feature in case.features:
            kwargs["out_dtype"] = out_dtype
    if "nan" in case.features and a.numel():
        a = a.clone()  # row 0 of the result must be NaN, the rest finite
        a.view(torch.uint8)[0, 0] = FORMATS[dtype][1][0]
    if "saturation" in case.features and a.numel():
        largest = FORMATS[dtype][0] if dtype in FP8_DTYPES else -128.0
        a, b = a.clone(), b.clone()
        a[0].fill_(largest), b[:, 0].fill_(largest)  # out[0, 0]: K largest² in float32
        kwargs["out_dtype"] = torch.float32
    return (a, b, scale_a, scale_b), kwargs


# (argument, expected exception, what): each is built by bad_input().
BAD_INPUTS = [
    ("scale_b", "ValueError", "scale_b of no recipe"),
    ("scale_a", "ValueError", "row scale_a of the wrong length"),
    ("scale_a", "ValueError", "block scale_a for a tensor-wise scale_b"),
    ("a", "ValueError", "block recipe with K not a multiple of 128"),
    ("scale_a", "TypeError", "float64 scale"),
    ("scale_b", "TypeError", "missing scale"),
    ("b", "TypeError", "mixed fp8 encodings"),
    ("a", "TypeError", "float32 input"),
    ("b", "ValueError", "K mismatch"),
    ("bias", "ValueError", "bias shape"),
    ("out_dtype", "TypeError", "fp8 out_dtype"),
    ("out_dtype", "TypeError", "int32 with scales"),
]


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments scaled_gemm must refuse, naming ``case.argument``."""
    e4m3 = torch.float8_e4m3fn
    a, b = quantized((4, 256), e4m3, 1), quantized((256, 3), e4m3, 2)
    one = torch.ones(())
    return {
        "scale_b_of_no_recipe": ((a, b, one, torch.ones(3)), {}),
        "row_scale_a_of_the_wrong_length": ((a, b, torch.ones(3, 1), torch.ones(1, 3)), {}),
        "block_scale_a_for_a_tensor-wise_scale_b": ((a, b, torch.ones(4, 2), one), {}),
        "block_recipe_with_K_not_a_multiple_of_128": (
            (a[:, :200], b[:200], torch.ones(4, 2), torch.ones(2, 1)), {}),
        "float64_scale": ((a, b, one.double(), one), {}),
        "missing_scale": ((a, b, one, None), {}),
        "mixed_fp8_encodings": ((a, b.to(torch.float8_e5m2), one, one), {}),
        "float32_input": ((a.float(), b.float(), one, one), {}),
        "K_mismatch": ((a, b[:100], one, one), {}),
        "bias_shape": ((a, b, one, one), {"bias": torch.zeros(4)}),
        "fp8_out_dtype": ((a, b, one, one), {"out_dtype": e4m3}),
        "int32_with_scales": ((a.view(torch.int8), b.view(torch.int8), one, one),
                              {"out_dtype": torch.int32}),
    }[case.params["what"]]


def declared_case(dtype, values, features, limits) -> Case | None:
    """A small call in ``dtype`` using ``features`` with the sizes in ``values`` and
    the others at their allowed values nearest 13×7×128."""
    if dtype not in DTYPES or ("int32_out" in features and (dtype != "int8" or len(features) > 1)):
        return None
    if "row" in features and "block" in features:
        return None
    dims = declared_sizes(values, limits, (("M", 13), ("N", 7), ("K", BLOCK)))
    if dims is None or ("block" in features and dims["K"] % BLOCK):
        return None
    m, n, k = dims["M"], dims["N"], dims["K"]
    if m * k + k * n + m * n > MAX_ELEMENTS:
        return None
    return Case("scaled_gemm", dtype, dims, "b.T", tuple(sorted(features)))


SPEC = ConformanceSpec(numeric_cases, inputs, BAD_INPUTS, bad_input, declared_case)
