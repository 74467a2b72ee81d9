"""n-bit affine integers: float64 re-computation of spec §3, invariants, packing, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.formats import integer as I

BITS = [2, 3, 4, 5, 6, 7, 8]


def test_registered_in_contract_order():
    assert ql.formats("integer") == ["int8", "int4", "int2", "int3", "int5", "int6", "int7"]


# ----------------------------------------------------------------------------- reference
def reference(x, bits, symmetric, granularity, group_size, restricted, scale_dtype):
    """Spec §3 written out group by group in float64 (loops, no shared code with the module)."""
    x = np.asarray(x, np.float64)
    if granularity == "tensor":
        groups = [x.reshape(-1)]
    elif granularity == "channel":
        groups = list(x.reshape(-1, x.shape[-1]))
    else:
        groups = list(x.reshape(-1, group_size))
    sdt = np.float16 if scale_dtype == "float16" else np.float32
    eps = float(np.finfo(sdt).smallest_subnormal)
    codes, scales, zeros, deq = [], [], [], []
    for g in groups:
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            qmin = -qmax if restricted else -qmax - 1
            s = float(sdt(max(np.abs(g).max() / qmax, eps)))
            z = 0
        else:
            qmin, qmax = 0, 2 ** bits - 1
            lo, hi = min(g.min(), 0.0), max(g.max(), 0.0)
            s = float(sdt(max((hi - lo) / (qmax - qmin), eps)))
            z = int(np.clip(qmin - np.rint(lo / s), qmin, qmax))
        q = np.clip(np.rint(g / s) + z, qmin, qmax)
        codes.append(q)
        scales.append(s)
        zeros.append(z)
        deq.append(np.float32(s * (q - z)))
    return (np.concatenate(codes).reshape(x.shape), np.array(scales), np.array(zeros),
            np.concatenate(deq).reshape(x.shape).astype(np.float32))


GRAN = [("tensor", None), ("channel", None), ("group", 32), ("group", 128)]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("gran,gs", GRAN)
def test_agrees_with_float64_recomputation(bits, symmetric, gran, gs):
    rng = np.random.default_rng(bits * 10 + symmetric)
    x = (rng.standard_t(4, size=(6, 256)) * 0.02 + (0 if symmetric else 0.01)).astype(np.float32)
    x[1, :128] = 0.0                                       # an all-zero group / half row
    opts = {"symmetric": symmetric, "granularity": gran}
    if gs:
        opts["group_size"] = gs
    qt = ql.quantize(x, f"int{bits}", **opts)
    sd = qt.options["scale_dtype"]
    q, s, z, xh = reference(x, bits, symmetric, gran, gs, False, sd)
    fmt = ql.get(f"int{bits}")
    np.testing.assert_array_equal(fmt.codes(qt), q)
    ss, zz = fmt.params(qt)
    np.testing.assert_array_equal(ss.reshape(-1), s)
    np.testing.assert_array_equal(zz.reshape(-1), z)
    assert qt.meta["scale"].dtype == np.dtype(sd)
    np.testing.assert_array_equal(qt.dequantize(), xh)
    # the same numbers from the lesson-level functions (float64 scales, no storage rounding)
    s64, z64, qmin, qmax = I.affine_params(x, bits, symmetric, granularity=gran, group_size=gs)
    assert s64.shape == {"tensor": (), "channel": (6,), "group": (6, 256 // (gs or 1))}[gran]
    if sd == "float32":
        np.testing.assert_array_equal(s64.astype(np.float32).reshape(-1), s.astype(np.float32))


def test_restricted_int8_range():
    x = np.array([[-1.0, -0.5, 0.0, 0.25, 1.0]], np.float32)
    for restricted, lo in [(True, -127), (False, -128)]:
        qt = ql.quantize(x, "int8", restricted=restricted, granularity="tensor")
        assert ql.get("int8").codes(qt).tolist() == [[-127, -64, 0, 32, 127]]
        # a static range smaller than the data: -128 is reachable only by clipping
        fq = I.fake_quant(np.array([-3.0, 3.0]), 8, restricted=restricted, clip_range=1.0)
        np.testing.assert_allclose(fq, [lo / 127, 1.0], rtol=1e-6)


# ----------------------------------------------------------------------------- invariants
data = arrays(np.float32, st.tuples(st.integers(1, 4), st.sampled_from([32, 64])),
              elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@settings(max_examples=80, deadline=None)
@given(x=data, bits=st.sampled_from(BITS), symmetric=st.booleans(),
       gran=st.sampled_from(["tensor", "channel", "group"]), sd=st.sampled_from(["float16", "float32"]))
def test_error_bound_idempotence_and_exact_zero(x, bits, symmetric, gran, sd):
    opts = {"symmetric": symmetric, "granularity": gran, "scale_dtype": sd}
    if gran == "group":
        opts["group_size"] = 16
    fmt = ql.get(f"int{bits}")
    try:
        qt = fmt.quantize(x, **opts)
    except ql.FormatError as e:                            # float16 scale overflow is refused
        assert sd == "float16" and "overflows" in str(e)
        return
    xh = qt.dequantize()
    s, z = fmt.params(qt)
    q = fmt.codes(qt)
    g = 16 if gran == "group" else None
    shape3 = I._grouped(x, gran, g).shape
    s_el = np.broadcast_to(s.reshape(shape3[0], shape3[1], 1), shape3).reshape(x.shape)
    z_el = np.broadcast_to(z.reshape(shape3[0], shape3[1], 1), shape3).reshape(x.shape)
    qmin, qmax = I.code_range(bits, symmetric)
    assert q.min() >= qmin and q.max() <= qmax
    # |x - x_hat| <= s/2 where x/s + z lies inside the grid (+ the float32 rounding of x_hat)
    t = x.astype(np.float64) / s_el + z_el
    inside = (t >= qmin - 0.5) & (t <= qmax + 0.5)
    err = np.abs(x.astype(np.float64) - xh)
    assert np.all(err[inside] <= s_el[inside] / 2 + np.abs(xh[inside]) * 2.0 ** -24)
    # re-quantizing the grid points with the same parameters returns the same codes
    q2 = I.quantize_codes(xh, s, z, qmin, qmax, gran, g)
    np.testing.assert_array_equal(q2, q)
    # symmetric with normal float16 scales: the whole round trip is a fixed point (the largest
    # element lands on +-qmax, s16*qmax is exact in float32, so the refit scale is s16 again)
    eps16 = np.finfo(np.float16).smallest_subnormal
    if sd == "float16" and symmetric and np.all((s >= np.finfo(np.float16).tiny) | (s == eps16)):
        np.testing.assert_array_equal(fmt.quantize(xh, **opts).dequantize(), xh)
    assert np.all(xh[x == 0] == 0)                         # 0 is exact in every scheme


def test_all_zero_group_uses_eps_and_decodes_to_zero():
    x = np.zeros((2, 128), np.float32)
    x[1] = np.linspace(-1, 1, 128)
    for symmetric in (True, False):
        qt = ql.quantize(x, "int4", symmetric=symmetric)
        assert qt.meta["scale"][0, 0] == np.finfo(np.float16).smallest_subnormal
        assert np.all(qt.dequantize()[0] == 0)


# ----------------------------------------------------------------------------- packing
@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from(BITS), n=st.integers(1, 70), seed=st.integers(0, 2 ** 32 - 1))
def test_pack_round_trip_every_width(bits, n, seed):
    c = np.random.default_rng(seed).integers(0, 2 ** bits, n).astype(np.uint8)
    p = I.pack_bits(c, bits)
    assert p.dtype == np.uint8 and p.size == -(-n * bits // 8)
    np.testing.assert_array_equal(I.unpack_bits(p, bits, n), c)
    # LSB-first stream, independently: bit k of the stream is bit (k % 8) of byte k // 8
    stream = [(int(v) >> j) & 1 for v in c for j in range(bits)]
    stream += [0] * (-len(stream) % 8)
    expect = [sum(b << j for j, b in enumerate(stream[i:i + 8])) for i in range(0, len(stream), 8)]
    assert p.tolist() == expect


def test_nibble_order_and_twos_complement():
    """Signed codes are b-bit two's complement; 4-bit codes go low nibble first (torchao)."""
    x = np.array([7, -7, 1, -1], np.float32)               # amax 7 -> s = 1, codes = x
    qt = ql.quantize(x, "int4", granularity="tensor")
    assert ql.get("int4").codes(qt).tolist() == [7, -7, 1, -1]
    assert qt.data.tolist() == [0x97, 0xF1]                # byte 0 = (-7 & 15) << 4 | 7
    qt3 = ql.quantize(np.array([1, -1, 3, -4], np.float32), "int3", granularity="tensor",
                      restricted=False)                   # s = 4/3: codes 1, -1, 2, -3
    assert ql.get("int3").codes(qt3).tolist() == [1, -1, 2, -3]
    # fields (b2 b1 b0) 001, 111, 010, 101 laid LSB-first: byte 0 = [q2.b1 q2.b0 | q1 | q0]
    # = 0b10_111_001, byte 1 = [0000 | q3 | q2.b2] = 0b0000_101_0
    assert qt3.data.tolist() == [0b10111001, 0b00001010]


# ----------------------------------------------------------------------------- accounting
def test_bits_per_weight():
    assert ql.get("int4").bits_per_weight() == 4.125                # 4 + 16/128
    assert ql.get("int4").bits_per_weight(symmetric=False) == 4 + 20 / 128
    assert ql.get("int8").bits_per_weight() == 8.0
    x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    qt = ql.quantize(x, "int4")
    assert qt.bits_per_weight == 8 * qt.nbytes / qt.size == 4.125
    assert ql.quantize(x, "int4", symmetric=False).bits_per_weight == 4 + 20 / 128
    assert ql.quantize(x, "int8").bits_per_weight == 8 + 32 / 256  # one float32 per row
    assert ql.quantize(x, "int3", group_size=64, scale_dtype="float32").bits_per_weight == 3.5


def test_option_resolution():
    o = ql.quantize(np.ones((2, 64), np.float32), "int8", group_size=32).options
    assert o["granularity"] == "group" and o["group_size"] == 32 and o["scale_dtype"] == "float16"
    o = ql.quantize(np.ones((2, 64), np.float32), "int4", granularity="channel").options
    assert o["group_size"] is None and o["scale_dtype"] == "float32"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("x,opts,err,match", [
    (np.arange(256), {}, ql.InputError, "floating-point"),
    (np.full(128, np.nan, np.float32), {}, ql.InputError, "NaN"),
    (np.zeros((0, 128), np.float32), {}, ql.InputError, "empty"),
    (np.ones((2, 100), np.float32), {}, ql.ShapeError, r"group_size=128.*length 100"),
    (np.ones((2, 100), np.float32), {"group_size": 64}, ql.ShapeError, "64.*100"),
    (np.ones(64, np.float32), {"granularity": "row"}, ql.FormatError, "tensor, channel, group"),
    (np.ones(64, np.float32), {"granularity": "channel", "group_size": 32}, ql.FormatError,
     "only applies"),
    (np.ones(64, np.float32), {"group_size": 0}, ql.FormatError, "positive integer"),
    (np.ones(64, np.float32), {"symmetric": False, "restricted": True}, ql.FormatError, "signed"),
    (np.ones(64, np.float32), {"scale_dtype": "bfloat16"}, ql.FormatError, "float16' or 'float32"),
    (np.ones(64, np.float32), {"bits": 3}, ql.FormatError, "does not take option"),
    (np.full(128, 1e6, np.float32), {}, ql.FormatError, "overflows float16"),
])
def test_bad_input(x, opts, err, match):
    with pytest.raises(err, match=match):
        ql.quantize(x, "int4", **opts)


@pytest.mark.parametrize("bits", [1, 9, 4.0, True])
def test_bad_bits(bits):
    with pytest.raises(ql.FormatError, match="bits must be an integer from 2 to 8"):
        I.affine_params(np.ones(8), bits)
