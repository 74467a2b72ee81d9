"""ggml's shared scale searches (QX, Q3S, QKX, QP) and scale packings.

Oracle: a literal, scalar, element-by-element transliteration of the C functions in
``ggml/src/ggml-quants.c`` (``make_qx_quants``, ``make_q3_quants``, ``make_qkx2_quants``,
``make_qkx3_quants``, ``make_qp_quants``) on NumPy float32 scalars — one float32 rounding
per C operation, in source order — compared with the vectorised versions on batches of
blocks.  (The K-quant golden files then check the searches once more, end to end.)
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from quantlab.formats.ggml import search
from quantlab.formats.ggml.numerics import seq_sum

f32 = np.float32


def nearest_int(v):
    return int(((np.array(v, dtype=f32) + f32(12582912.0)).view(np.int32) & 0x7FFFFF) - 0x400000)


# ---------------------------------------------------------------- scalar transliterations of ggml
def qx_ref(x, nmax, qw):
    n = len(x)
    mx = f32(0); amax = f32(0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax; mx = x[i]
    if amax < f32(1e-15):
        return f32(0), [0] * n
    L = [0] * n

    def weight(i):
        return qw[i] if qw is not None else x[i] * x[i]
    iscale = f32(-nmax) / mx
    sumlx = f32(0); suml2 = f32(0)
    for i in range(n):
        l = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = l + nmax
        w = weight(i)
        sumlx = sumlx + w * x[i] * f32(l)
        suml2 = suml2 + w * f32(l) * f32(l)
    scale = sumlx / suml2 if suml2 else f32(0)
    best = scale * sumlx
    for k in range(-9, 10):
        if k == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(k)) / mx
        sumlx = f32(0); suml2 = f32(0)
        for i in range(n):
            l = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            w = weight(i)
            sumlx = sumlx + w * x[i] * f32(l)
            suml2 = suml2 + w * f32(l) * f32(l)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale, L


def q3_ref(x, nmax):
    n = len(x)
    mx = f32(0); amax = f32(0)
    for i in range(n):
        if abs(x[i]) > amax:
            amax = abs(x[i]); mx = x[i]
    if amax < f32(1e-15):
        return f32(0), [0] * n
    iscale = f32(-nmax) / mx
    L = [0] * n
    sumlx = f32(0); suml2 = f32(0)
    for i in range(n):
        l = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = l
        w = x[i] * x[i]
        sumlx = sumlx + w * x[i] * f32(l)
        suml2 = suml2 + w * f32(l) * f32(l)
    for _ in range(5):
        changed = 0
        for i in range(n):
            w = x[i] * x[i]
            slx = sumlx - w * x[i] * f32(L[i])
            if slx > 0:
                sl2 = suml2 - w * f32(L[i]) * f32(L[i])
                nl = max(-nmax, min(nmax - 1, nearest_int(x[i] * sl2 / slx)))
                if nl != L[i]:
                    slx = slx + w * x[i] * f32(nl)
                    sl2 = sl2 + w * f32(nl) * f32(nl)
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = nl; sumlx = slx; suml2 = sl2; changed += 1
        if not changed:
            break
    return (sumlx / suml2 if suml2 > 0 else f32(0)), [l + nmax for l in L]


def qkx_ref(x, weights, nmax, rmin, rdelta, nstep, use_mad, variant=2):
    n = len(x)
    mn = x[0]; mx = x[0]
    sum_w = weights[0]; sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn: mn = x[i]
        if x[i] > mx: mx = x[i]
        sum_w = sum_w + weights[i]
        sum_x = sum_x + weights[i] * x[i]
    if mn > 0:
        mn = f32(0)
    if (mx == mn) if variant == 2 else (mx <= mn):
        return f32(0), -mn, [0] * n
    iscale = f32(nmax) / (mx - mn)
    scale = f32(1) / iscale
    L = [0] * n
    best = f32(0)
    for i in range(n):
        L[i] = max(0, min(nmax, nearest_int(iscale * (x[i] - mn))))
        diff = scale * f32(L[i]) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best = best + weights[i] * diff
    if nstep < 1:
        return scale, -mn, L
    for k in range(nstep + 1):
        iscale = (f32(rmin) + f32(rdelta) * f32(k) + f32(nmax)) / (mx - mn)
        sl = f32(0); sl2 = f32(0); sxl = f32(0)
        Laux = [0] * n
        for i in range(n):
            if variant == 2:
                l = max(0, min(nmax, nearest_int(iscale * (x[i] - mn))))
            else:
                v = iscale * (x[i] - mn)
                l = nearest_int(min(v, f32(nmax))) if v > 0 else 0
            Laux[i] = l
            w = weights[i]
            sl = sl + w * f32(l)
            sl2 = sl2 + w * f32(l) * f32(l)
            sxl = sxl + w * f32(l) * x[i]
        D = sum_w * sl2 - sl * sl
        if D > 0:
            this_scale = (sum_w * sxl - sum_x * sl) / D
            this_min = (sl2 * sum_x - sl * sxl) / D
            if this_min > 0:
                this_min = f32(0)
                this_scale = sxl / sl2
            err = f32(0)
            for i in range(n):
                diff = this_scale * f32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                err = err + weights[i] * diff
            if err < best:
                L = Laux; best = err; scale = this_scale; mn = this_min
    return scale, -mn, L


def qp_ref(x, nmax, qw):
    n = len(x)
    mx = f32(0)
    for i in range(n):
        mx = mx if mx > x[i] else x[i]
    if mx < f32(1e-15):
        return f32(0), [0] * n
    iscale = f32(nmax) / mx
    L = [nearest_int(iscale * x[i]) & 0xFF for i in range(n)]
    scale = f32(1) / iscale
    best = f32(0)
    for i in range(n):
        diff = x[i] - scale * f32(L[i])
        best = best + qw[i] * diff * diff
    for k in range(-4, 5):
        if k == 0:
            continue
        isc = (f32(0.1) * f32(k) + f32(nmax)) / mx
        sc = f32(1) / isc
        mse = f32(0)
        for i in range(n):
            l = min(nmax, nearest_int(isc * x[i]))
            diff = x[i] - sc * f32(l)
            mse = mse + qw[i] * diff * diff
        if mse < best:
            best = mse; iscale = isc
    sumlx = f32(0); suml2 = f32(0)
    for i in range(n):
        l = min(nmax, nearest_int(iscale * x[i]))
        L[i] = l & 0xFF
        sumlx = sumlx + qw[i] * x[i] * f32(l)
        suml2 = suml2 + qw[i] * f32(l) * f32(l)
    for _ in range(5):
        changed = 0
        for i in range(n):
            w = qw[i]
            slx = sumlx - w * x[i] * f32(L[i])
            sl2 = suml2 - w * f32(L[i]) * f32(L[i])
            if slx > 0 and sl2 > 0:
                nl = min(nmax, nearest_int(x[i] * sl2 / slx))
                if nl != L[i]:
                    slx = slx + w * x[i] * f32(nl)
                    sl2 = sl2 + w * f32(nl) * f32(nl)
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = nl & 0xFF; sumlx = slx; suml2 = sl2; changed += 1
        if not changed:
            break
    return (sumlx / suml2 if suml2 > 0 else f32(0)), L


# ---------------------------------------------------------------- test data
def blocks(nb, n, seed):
    """Mixed blocks: gaussian, heavy-tailed, one-signed, with zeros, ties and tiny values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((nb, n)) * 0.02).astype(f32)
    x[1::7] = (rng.standard_t(3, (len(x[1::7]), n)) * 0.02).astype(f32)
    x[2::7] = np.abs(x[2::7])
    x[3::7] = -np.abs(x[3::7])
    x[4::7, ::3] = 0
    x[5::7] = np.round(x[5::7] * 200).astype(f32)          # small integers: exact ties
    x[6::7] *= f32(1e-6)
    x[0] = 0
    x[7] = f32(0.5)                                         # constant block
    x[14] = f32(-0.25)
    x[21, :] = 0
    x[21, 3] = f32(1e-16)                                   # below GROUP_MAX_EPS
    return x


def imatrix_weights(x, seed):
    rng = np.random.default_rng(seed)
    qw = rng.uniform(0, 3, x.shape).astype(f32)
    qw[:, ::5] = 0                                          # zero weights are legal
    sigma2 = (seq_sum(x * x) / f32(x.shape[1]))[:, None]
    return qw * np.sqrt(sigma2 + x * x)


def check_same(ours, ref, what):
    s, L = ours
    rs, rL = ref
    assert np.float32(s).view(np.uint32) == np.float32(rs).view(np.uint32), f"{what}: scale {s!r} != {rs!r}"
    assert list(map(int, L)) == list(rL), f"{what}: levels {list(L)} != {rL}"


# ---------------------------------------------------------------- tests
def test_sequential_sum_matches_numerics_seq_sum():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((32, 300)) * np.exp(rng.standard_normal((32, 300)) * 4)).astype(f32)
    a[:, :3] = -0.0                                          # all -0.0: ggml's sum is +0.0
    got = search._sum(a)
    assert np.array_equal(got.view(np.uint32), seq_sum(a.T).view(np.uint32))
    assert not np.signbit(got[:3]).any()


@pytest.mark.parametrize("nmax,n,weighted", [(4, 16, True), (8, 32, True), (16, 32, True),
                                              (32, 16, False), (32, 16, True)])
def test_qx_matches_ggml_transliteration(nmax, n, weighted):
    x = blocks(42, n, seed=nmax + n)
    w = imatrix_weights(x, seed=3) if weighted else None
    s, L = search.qx_quants(x, nmax, w)
    assert s.shape == (42,) and L.shape == (42, n)
    for b in range(len(x)):
        check_same((s[b], L[b]), qx_ref(x[b], nmax, None if w is None else w[b]), f"block {b}")


def test_q3_matches_ggml_transliteration():
    x = blocks(56, 16, seed=7)
    s, L = search.q3_quants(x, 4)
    for b in range(len(x)):
        check_same((s[b], L[b]), q3_ref(x[b], 4), f"block {b}")


QKX_PARAMS = [  # (n, nmax, rmin, rdelta, nstep, use_mad, weights, variant): every caller of §4.3
    (16, 3, -0.5, 0.1, 15, True, "abs", 2),       # Q2_K ref
    (32, 15, -1.0, 0.1, 20, False, "av", 2),      # Q4_K ref
    (32, 31, -0.5, 0.1, 15, False, "av", 2),      # Q5_K ref
    (16, 3, -0.9, 0.05, 36, False, "imatrix", 3),  # Q2_K imatrix
    (32, 15, -0.9, 0.05, 36, False, "imatrix", 3),  # Q4_K / Q4_1 imatrix
    (32, 31, -0.9, 0.05, 36, False, "imatrix", 3),  # Q5_K / Q5_1 imatrix
]


@pytest.mark.parametrize("n,nmax,rmin,rdelta,nstep,use_mad,wkind,variant", QKX_PARAMS)
def test_qkx_matches_ggml_transliteration(n, nmax, rmin, rdelta, nstep, use_mad, wkind, variant):
    x = blocks(28, n, seed=nmax * 3 + variant)
    if wkind == "abs":
        w = np.abs(x)
    elif wkind == "av":
        w = np.sqrt(seq_sum(x * x) / f32(n))[:, None] + np.abs(x)
    else:
        w = imatrix_weights(x, seed=5)
    s, m, L = search.qkx_quants(x, w, nmax, rmin, rdelta, nstep, use_mad, variant=variant)
    assert L.min() >= 0 and L.max() <= nmax
    for b in range(len(x)):
        rs, rm, rL = qkx_ref(x[b], w[b], nmax, rmin, rdelta, nstep, use_mad, variant)
        check_same((s[b], L[b]), (rs, rL), f"block {b}")
        assert np.float32(m[b]).view(np.uint32) == np.float32(rm).view(np.uint32), f"block {b} min"


@pytest.mark.parametrize("n,nmax", [(16, 15), (8, 63)])
def test_qp_matches_ggml_transliteration(n, nmax):
    rng = np.random.default_rng(n)
    x = np.abs(blocks(35, n, seed=n)) * f32(3)
    x[8] = 0
    w = rng.uniform(0, 5, x.shape).astype(f32)
    w[9] = 0
    s, L = search.qp_quants(x, nmax, w)
    for b in range(len(x)):
        check_same((s[b], L[b]), qp_ref(x[b], nmax, w[b]), f"block {b}")


def test_all_zero_groups_give_level_zero_not_nmax():
    """ggml returns L = 0 (not the offset nmax) for all-zero groups: spec §13 pitfall 5."""
    z = np.zeros((2, 16), f32)
    z[1, 5] = f32(5e-16)
    for s, L in (search.qx_quants(z, 32), search.q3_quants(z, 4), search.qp_quants(z, 15, z + 1)):
        assert not s.any() and not L.any()
    s, m, L = search.qkx2_quants(z, z, 3, -0.5, 0.1, 15, True)
    assert s[0] == 0 and m[0] == 0 and not L[0].any()


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (12,)))
def test_scale_min_k4_round_trip(raw):
    """unpack∘pack is the identity on codes, and pack∘unpack on bytes (the 12 bytes are fully used)."""
    sc, mn = search.unpack_scale_min_k4(raw[None])
    assert np.array_equal(search.pack_scale_min_k4(sc, mn)[0], raw)
    assert sc.max() < 64 and mn.max() < 64


def test_scale_min_k4_matches_get_scale_min_k4():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 256, (50, 12), dtype=np.uint8)
    sc, mn = search.unpack_scale_min_k4(S)
    for b in range(50):
        q = S[b].astype(int)
        for j in range(8):          # ggml get_scale_min_k4, literally
            if j < 4:
                d, m = q[j] & 63, q[j + 4] & 63
            else:
                d, m = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
            assert (sc[b, j], mn[b, j]) == (d, m)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (12,)))
def test_q3_scales_round_trip(raw):
    v = search.unpack_q3_scales(raw[None])
    assert np.array_equal(search.pack_q3_scales(v)[0], raw)


def test_q3_scales_match_ggml_packing_loop():
    rng = np.random.default_rng(1)
    v = rng.integers(0, 64, (30, 16))
    packed = search.pack_q3_scales(v)
    for b in range(30):
        s = [0] * 12                # quantize_row_q3_K_ref's packing loop, literally
        for j in range(16):
            l = int(v[b, j])
            if j < 8:
                s[j] = l & 0xF
            else:
                s[j - 8] |= (l & 0xF) << 4
            s[j % 4 + 8] |= (l >> 4) << (2 * (j // 4))
        assert packed[b].tolist() == s
    assert np.array_equal(search.unpack_q3_scales(packed), v)


def test_2bit_planes_match_ggml_loop():
    rng = np.random.default_rng(2)
    L = rng.integers(0, 4, (10, 256))
    qs = search.pack_2bit_planes(L)
    for b in range(10):
        ref = [0] * 64
        for j in range(0, 256, 128):
            for l in range(32):
                ref[j // 4 + l] = (L[b, j + l] | (L[b, j + l + 32] << 2) | (L[b, j + l + 64] << 4)
                                   | (L[b, j + l + 96] << 6))
        assert qs[b].tolist() == ref
    assert np.array_equal(search.unpack_2bit_planes(qs), L)


def test_first_max_abs_is_ggmls_scan():
    xt = np.array([[0.0, -0.0, 1.0, np.nan, -2.0],
                   [-0.0, -0.0, -1.0, 3.0, 2.0],
                   [0.0, 0.0, 0.5, -3.0, 1.0]], dtype=f32)          # (n=3, B=5)
    amax, m = search._first_max_abs(xt)
    assert amax.tolist() == [0, 0, 1, 3, 2] and m.tolist() == [0, 0, 1, 3, -2]
    assert not np.signbit(m[:2]).any()                              # zeros give m = +0


def test_unsupported_rmse_type_is_a_quantlab_error():
    from quantlab.errors import QuantlabError
    with pytest.raises(QuantlabError, match="rmse_type"):
        search.qx_quants(np.ones((1, 16), f32), 4, rmse_type=2)
