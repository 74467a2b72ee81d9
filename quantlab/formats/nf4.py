"""NF4 and bitsandbytes FP4: 4-bit codebooks on flat blocks, plus double quantization.

Spec ``algorithms.md`` §4.  Both formats are *codebooks*: a 4-bit index picks one of 16
fixed levels in ``[-1, 1]``, and every flat block of ``blocksize`` weights (row-major
flatten, the last block may be partial) stores one float32 ``absmax``::

    u       = clip(x * (1 / absmax_b), -1, 1)           # full blocks: multiply by the reciprocal
    idx     = nearest level of u (ties -> lower level)   # bucketize against the 15 midpoints
    x_hat   = code[idx] * absmax_b                       # float32

Double quantization (QLoRA's "DQ") stores the absmax values themselves in 8 bits::

    c        = mean(absmax)                               # one float32 offset per tensor
    q8, a2   = blockwise8(absmax - c, dynamic map, 256)   # uint8 codes + one float32 per 256 blocks
    absmax'  = dynamic[q8] * a2 + c                       # float32, used at dequantization

Everything here follows bitsandbytes 0.50.2 on CPU bit for bit (golden file
``bnb-4bit.npz``), including its float32 operation order.  Where that needs more than the
formulas above, the comment says which bitsandbytes detail is reproduced and why.

One deliberate deviation: bitsandbytes 0.50.2's CPU ``dequantize_4bit`` (AVX-512 path)
applies the wrong absmax when the last dimension is a multiple of 16 but not of the block
size (e.g. shape (8, 48) with blocksize 64: it indexes absmax per row).  quantlab decodes
the flat blocks exactly as the quantizer wrote them (bitsandbytes' own torch path agrees).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import FormatError
from ..kernels import formats as kernel_formats   # compiled twins (None when off)
from .base import Format, QTensor, register

f32 = np.float32

__all__ = ["NF4_CODE", "FP4_CODE", "VALID_BLOCKSIZES", "DQ_BLOCKSIZE", "dynamic_map",
           "quantize_blockwise_8bit", "dequantize_blockwise_8bit", "NF4", "BnBFP4"]

# --------------------------------------------------------------------------- codebooks
# NF4 (index -> value), bitsandbytes get_4bit_type("nf4"); regenerated from normal
# quantiles in the tests (create_normal_map(offset=0.9677083)).  7 negative levels, an
# exact 0 at index 7, 8 positive levels; both ends exactly +-1.
NF4_CODE = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=f32)

# bitsandbytes FP4 is a sign + 3-bit magnitude code (not OCP E2M1): magnitudes
# 0, 0.0625, 8, 12, 4, 6, 2, 3 (bits 000..111), divided by the largest (12) in float32.
# Bit 3 is the sign, so index 8 is "-0" -- stored by bitsandbytes as +0.0 in its table.
FP4_CODE = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3], dtype=f32) / f32(12)).astype(f32)
FP4_CODE = np.concatenate([FP4_CODE, -FP4_CODE]).astype(f32)
FP4_CODE[8] = 0.0                                  # +0.0, as get_4bit_type("fp4") builds it

VALID_BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
DQ_BLOCKSIZE = 256                                 # second-level block (constants per absmax2)
ABSMAX_FLOOR = f32(1e-38)                          # bnb clamps absmax before 1/absmax


def _linspace_f32(start: float, stop: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 on CPU: two-sided, ``start + step*i`` for the first half and
    ``stop - step*(steps-1-i)`` for the second, each evaluated as ONE fused multiply-add.

    Fusing matters: with two roundings 42 of the 256 dynamic-map entries move by an ulp.  The
    float64 evaluation below is exact (the product has <= 31 significant bits and the sum
    fits in 53), so casting it to float32 rounds once, like the FMA."""
    a, b = f32(start), f32(stop)
    step = np.float64(f32((b - a) / f32(steps - 1)))
    i = np.arange(steps, dtype=np.float64)
    lo = np.float64(a) + step * i                  # fma(step, i, start)
    hi = np.float64(b) - step * (steps - 1 - i)    # fma(-step, steps-1-i, stop)
    return np.where(i < steps // 2, lo, hi).astype(f32)


@lru_cache(maxsize=1)
def dynamic_map() -> np.ndarray:
    """bitsandbytes' signed 8-bit dynamic map, ``create_dynamic_map(signed=True, 7, 8)``.

    For each decimal exponent level ``k = 0..6`` the ``2^k`` midpoints of
    ``linspace(0.1, 1, 2^k + 1)`` are scaled by ``10^(k-6)``, with both signs; then 0 and
    +1 (but no -1): 254 + 2 = 256 sorted entries, ``[-0.99297, ..., 1.0]``.
    """
    values = [np.zeros(1, f32), np.ones(1, f32)]
    for k in range(7):
        edges = _linspace_f32(0.1, 1.0, 2 ** k + 1)
        mids = ((edges[:-1] + edges[1:]) / f32(2)).astype(f32)      # 2^k midpoints, float32
        scale = f32(10.0 ** (k - 6))
        values += [scale * mids, -scale * mids]
    code = np.sort(np.concatenate(values).astype(f32))
    code.setflags(write=False)
    return code


# --------------------------------------------------------------------------- 8-bit blockwise
_LUT_SIZE = 65536


@lru_cache(maxsize=4)
def _lookup_table(code_bytes: bytes) -> np.ndarray:
    """bitsandbytes' CPU quantizer does not search the code: it snaps ``u`` to one of 65536
    evenly spaced points of [-1, 1] and reads the code index from a table built once::

        point_j = 2j / 65535 - 1                    (float32)
        lut[j]  = #{ midpoints m_i < point_j }      m_i = 0.5 * (code_i + code_{i+1})

    so values within half a grid step (1.5e-5) of a midpoint can land one code off the true
    nearest.  quantlab reproduces the table, not the ideal nearest code.
    """
    code = np.frombuffer(code_bytes, dtype=f32)
    mids = ((code[:-1] + code[1:]) * f32(0.5)).astype(f32)
    j = np.arange(_LUT_SIZE, dtype=f32)
    points = ((f32(2) * j) / f32(_LUT_SIZE - 1) - f32(1)).astype(f32)
    return np.searchsorted(mids, points, side="left").astype(np.uint8)


def quantize_blockwise_8bit(x, code: np.ndarray | None = None,
                            blocksize: int = DQ_BLOCKSIZE) -> tuple[np.ndarray, np.ndarray]:
    """bitsandbytes ``quantize_blockwise`` (CPU, float32): 8-bit codes and per-block absmax.

    ``x`` is flattened; ``code`` defaults to :func:`dynamic_map`.  Returns ``(codes uint8,
    absmax float32)``.  An all-zero block gets absmax 0 and codes 0.
    """
    code = dynamic_map() if code is None else np.asarray(code, dtype=f32)
    a = np.asarray(x, dtype=f32).reshape(-1)
    n = a.size
    nb = -(-n // blocksize)
    blocks = np.zeros(nb * blocksize, f32)
    blocks[:n] = a
    blocks = blocks.reshape(nb, blocksize)                          # (nb, blocksize)
    absmax = np.abs(blocks).max(axis=1)                              # (nb,)
    safe = np.where(absmax > 0, absmax, f32(1))
    with np.errstate(over="ignore", invalid="ignore"):
        # float32, as C: x * (1/absmax).  A subnormal absmax makes 1/absmax = inf, so x*inf
        # clips to +-1 and 0*inf = NaN, which the C cast turns into grid point 0.
        u = np.clip(blocks * (f32(1) / safe)[:, None], -1, 1)
        # grid index = trunc(fma((u + 1) * 0.5, 65535, 0.5)); float64 evaluates the fma exactly
        t = ((u + f32(1)) * f32(0.5)).astype(f32)
        g = np.floor((t.astype(np.float64) * (_LUT_SIZE - 1) + 0.5).astype(f32))
    j = np.where(np.isnan(g), 0, g).astype(np.int64)
    codes = _lookup_table(code.tobytes())[j]
    codes[absmax == 0] = 0
    return codes.reshape(-1)[:n], absmax


def dequantize_blockwise_8bit(codes, absmax, code: np.ndarray | None = None,
                              blocksize: int = DQ_BLOCKSIZE) -> np.ndarray:
    """``code[q] * absmax[block]`` in float32 (bitsandbytes ``dequantize_blockwise``)."""
    code = dynamic_map() if code is None else np.asarray(code, dtype=f32)
    q = np.asarray(codes, dtype=np.uint8).reshape(-1)
    scale = np.repeat(np.asarray(absmax, dtype=f32), blocksize)[:q.size]
    return (code[q] * scale).astype(f32)


def _torch_mean_f32(x: np.ndarray) -> np.float32:
    """``torch.mean`` of a float32 vector on CPU (AVX2 build), reproduced bit for bit.

    The DQ offset is ``absmax.mean()``, and a one-ulp difference in it moves 8-bit codes,
    so the summation order matters.  torch sums 8 lanes x 4 interleaved accumulators, with
    a 16-way cascade per accumulator, adds the lanes in order and divides by n.
    Golden-verified for up to 64 blocks; above 32768 blocks torch splits the sum across
    threads and its own result depends on the thread count.
    """
    x = np.asarray(x, dtype=f32).reshape(-1)
    n, lanes, ilp = x.size, 8, 4

    def row_sum(rows: np.ndarray) -> np.ndarray:            # rows: (size, ...) summed over axis 0
        size = rows.shape[0]
        size_ilp = size // ilp
        part = np.zeros((ilp,) + rows.shape[1:], f32)
        if size_ilp:
            part = _cascade(rows[:size_ilp * ilp].reshape((size_ilp, ilp) + rows.shape[1:]))
        for i in range(size_ilp * ilp, size):               # <= 3 leftovers into accumulator 0
            part[0] = part[0] + rows[i]
        return part[0] + part[1] + part[2] + part[3]

    if n < lanes:
        total = row_sum(x)
    else:
        nv = n // lanes
        vec = row_sum(x[:nv * lanes].reshape(nv, lanes))    # (lanes,)
        total = f32(0)
        for v in x[nv * lanes:]:                            # scalar tail first, then the lanes
            total = f32(total + v)
        for v in vec:
            total = f32(total + v)
    return f32(f32(total) / f32(n))


def _cascade(rows: np.ndarray) -> np.ndarray:
    """torch ``multi_row_sum``: 4 levels of accumulators, level 0 sums ``L = 2^p`` rows
    sequentially (``p = max(4, ceil(log2 size) // 4)``) and hands its sum to level 1, which
    hands over to level 2 every ``L^2`` rows, and so on; finally ``acc0 + acc1 + acc2 + acc3``."""
    size = rows.shape[0]
    p = max(4, (size - 1).bit_length() // 4)                # (size-1).bit_length() = ceil(log2 size)
    L = 1 << p
    acc = np.zeros((4,) + rows.shape[1:], f32)
    i = 0
    while i + L <= size:
        for _ in range(L):                                  # level 0: L rows, in order
            acc[0] = acc[0] + rows[i]
            i += 1
        for lvl in range(1, 4):                             # carry upward while the count is round
            acc[lvl] = acc[lvl] + acc[lvl - 1]
            acc[lvl - 1] = 0
            if i & ((L - 1) << (lvl * p)):
                break
    for r in rows[i:]:
        acc[0] = acc[0] + r
    return acc[0] + acc[1] + acc[2] + acc[3]


# --------------------------------------------------------------------------- nibble packing
def pack_high_first(idx: np.ndarray) -> np.ndarray:
    """Two 4-bit indices per byte, FIRST element in the HIGH nibble (bitsandbytes)::

        byte k = [ idx[2k] : bits 7..4 | idx[2k+1] : bits 3..0 ]
    """
    idx = np.asarray(idx, dtype=np.uint8).reshape(-1, 2)
    return ((idx[:, 0] << 4) | idx[:, 1]).astype(np.uint8)


def unpack_high_first(packed: np.ndarray, n: int) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)[:n]


# --------------------------------------------------------------------------- the formats
class _BnB4bit(Format):
    """Shared machinery of ``nf4`` and ``bnb_fp4`` (see the module docstring)."""

    family = "bnb"
    block_size = 64
    oracle = "bitsandbytes 0.50.2 CPU (golden bnb-4bit.npz)"
    options = {"blocksize": 64, "double_quant": False}
    code: np.ndarray = NF4_CODE

    def _check_options(self, blocksize, double_quant) -> None:
        if isinstance(blocksize, bool) or blocksize not in VALID_BLOCKSIZES:
            raise FormatError(f"{self.name}: blocksize={blocksize!r} is not supported; valid block "
                              f"sizes are {', '.join(map(str, VALID_BLOCKSIZES))}")
        if not isinstance(double_quant, (bool, np.bool_)):
            raise FormatError(f"{self.name}: double_quant must be True or False, got {double_quant!r}")

    def bits_per_weight(self, **opts) -> float:
        """``4 + 32/B`` plain; ``4 + 8/B + 32/(256 B)`` with DQ (per-tensor offset not counted)."""
        o = self.resolve_options(opts)
        self._check_options(o["blocksize"], o["double_quant"])
        bs = o["blocksize"]
        return 4 + (8 / bs + 32 / (bs * DQ_BLOCKSIZE) if o["double_quant"] else 32 / bs)

    # -- quantize (bitsandbytes default-backend quantize_4bit + functional.quantize_4bit) --
    def _quantize(self, x: np.ndarray, blocksize: int, double_quant: bool) -> QTensor:
        self._check_options(blocksize, double_quant)
        a = np.asarray(x, dtype=f32).reshape(-1)           # row-major flatten; f16 exact, f64 rounds
        n, bs = a.size, blocksize
        full, rem = divmod(n, bs)
        nb = full + (rem > 0)
        blocks = np.zeros(nb * bs, f32)
        blocks[:n] = a
        blocks = blocks.reshape(nb, bs)                    # (nb, bs), zero padded
        absmax = np.abs(blocks).max(axis=1)                # (nb,) float32
        floor = np.maximum(absmax, ABSMAX_FLOOR)
        u = np.empty_like(blocks)
        # full blocks: u = x * (1 / max(absmax, 1e-38)); absmax itself is stored unclamped
        u[:full] = blocks[:full] * (f32(1) / floor[:full])[:, None]
        if rem:
            # bitsandbytes treats the partial block separately: it DIVIDES, and stores the
            # clamped absmax (1e-38 for an all-zero tail instead of 0)
            u[full] = blocks[full] / floor[full]
            absmax[full] = floor[full]
        u = np.clip(u, -1, 1).reshape(-1)[:n]
        if n % 2:
            u = np.append(u, f32(0))                       # pad to whole bytes with a quantized 0
        idx = self._nearest(u)
        meta = self._store_absmax(absmax, double_quant)
        return QTensor(self, x.shape, pack_high_first(idx), meta,
                       {"blocksize": bs, "double_quant": bool(double_quant)})

    def _nearest(self, u: np.ndarray) -> np.ndarray:
        """Index of the nearest level; a value exactly on a midpoint goes to the LOWER level.
        Levels are sorted first (FP4's table is not sorted; its two zeros keep table order)."""
        order = np.argsort(self.code, kind="stable")
        srt = self.code[order]
        bounds = ((srt[:-1] + srt[1:]) / f32(2)).astype(f32)       # 15 float32 midpoints
        return order[np.searchsorted(bounds, u, side="left")].astype(np.uint8)

    @staticmethod
    def _store_absmax(absmax: np.ndarray, double_quant: bool) -> dict:
        if not double_quant:
            return {"absmax": absmax}
        offset = _torch_mean_f32(absmax)                            # c = mean(absmax)
        q8, absmax2 = quantize_blockwise_8bit((absmax - offset).astype(f32))
        return {"absmax": q8, "absmax2": absmax2, "offset": np.asarray(offset, dtype=f32)}

    # -- dequantize (bitsandbytes dequantize_4bit, CPU) ---------------------------------
    def _dequantize(self, qt: QTensor) -> np.ndarray:
        n, bs = qt.size, qt.options["blocksize"]
        if qt.options["double_quant"]:
            # absmax' = dynamic[q8] * absmax2 + offset, float32 (dequantize_blockwise + offset)
            absmax = dequantize_blockwise_8bit(qt.meta["absmax"], qt.meta["absmax2"]) \
                + qt.meta["offset"]
        else:
            absmax = qt.meta["absmax"]
        if (fast := kernel_formats.bnb4(self, qt, absmax, self._decode_table(qt.shape))) is not None:
            return fast                                             # same bits, compiled
        idx = unpack_high_first(qt.data, n)                         # (n,) 0..15
        table = self._decode_table(qt.shape)
        out = table[idx] * np.repeat(absmax.astype(f32), bs)[:n]   # x_hat = code[idx] * absmax
        return out.astype(f32).reshape(qt.shape)

    def _decode_table(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.code


class NF4(_BnB4bit):
    """NF4 — NormalFloat 4-bit (QLoRA), bitsandbytes layout.

    Spec card
    ---------
    bits        4-bit index into 16 levels at normal quantiles (NF4_CODE), exact 0 at index 7
    block       flat blocks of B = 64 weights (32...4096, powers of two) of the row-major
                flattened tensor; the last block may be partial
    per block   absmax: float32 (plain) -- or, with double_quant, a uint8 code of the
                dynamic 8-bit map + one float32 absmax2 per 256 blocks + one float32 offset
    layout      data = ceil(N/2) bytes, FIRST element in the HIGH nibble; odd N padded
                with the code of 0.0; the 256-entry dynamic map is a constant, not stored
    bpw         4 + 32/64 = 4.5 plain; 4 + 8/64 + 32/(64*256) = 4.127 with DQ
    formula     u = clip(x/absmax, -1, 1); idx = nearest level (ties -> lower);
                x_hat = NF4_CODE[idx] * absmax (float32)
    rounding    nearest level via the 15 float32 midpoints (bitsandbytes bucketize)
    zero block  absmax 0, every index 7, decodes to +0.0
    used in     QLoRA fine-tuning, transformers BitsAndBytesConfig(load_in_4bit, "nf4")
    """

    name = "nf4"
    summary = "NormalFloat4 codebook, flat blocks of 64 + fp32 absmax (bitsandbytes), optional DQ"
    code = NF4_CODE


class BnBFP4(_BnB4bit):
    """bnb_fp4 — bitsandbytes' 4-bit float (sign + 2-bit exponent + 1-bit mantissa).

    Spec card
    ---------
    bits        1 sign bit (bit 3) + 3 magnitude bits: 0, 0.0625, 8, 12, 4, 6, 2, 3 for
                bits 000..111, normalised by 12 -> levels 0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4.
                NOT OCP E2M1: the normal values are E2M1's times 2 (2, 3, 4, 6, 8, 12) but
                the subnormal is 0.0625 instead of 1, and the code order differs
    block       flat blocks of B = 64 (32...4096), last block may be partial; absmax float32
                or double-quantized exactly as ``nf4``
    layout      high nibble first, like ``nf4``
    bpw         4.5 plain, 4.127 with DQ
    formula     x_hat = FP4_CODE[idx] * absmax (float32); nearest level, ties -> lower level
    zero sign   index 8 (sign bit, zero magnitude) decodes to -0.0 where bitsandbytes' CPU
                kernel takes its scalar path (last dimension even but not a multiple of 16)
                and to +0.0 otherwise (its AVX-512 table, and its torch fallback for an odd
                last dimension).  Small positive inputs (0 < u <= 1/384) get index 8.
    used in     bitsandbytes Linear4bit(quant_type="fp4") (its default quant_type)
    """

    name = "bnb_fp4"
    summary = "bitsandbytes FP4 (sign + 3-bit magnitude codebook), flat blocks + fp32 absmax, opt. DQ"
    code = FP4_CODE

    def _decode_table(self, shape: tuple[int, ...]) -> np.ndarray:
        last = shape[-1] if shape else 1
        if last % 2 == 0 and last % 16:
            table = self.code.copy()
            table[8] = -0.0                                 # the scalar C path's "-0"
            return table
        return self.code


register(NF4())
register(BnBFP4())
