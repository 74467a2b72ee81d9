"""Bit boxes and the bit-flipper: decode/encode against NumPy and ml_dtypes, widget driven by code."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quantlab import FormatError, InputError
from quantlab.viz import bits as B

# layout -> (oracle dtype, unsigned view dtype)
ORACLES = {
    "fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp4_e2m1": ml_dtypes.float4_e2m1fn,
}


def _oracle_values(name):
    dt = np.dtype(ORACLES[name])
    n = 1 << B.layout(name).bits
    # (fp4 lives in a byte: the low 4 bits are the code)
    codes = np.arange(n, dtype=f"u{dt.itemsize}")
    with np.errstate(invalid="ignore"):                 # NaN codes widen to NaN
        return codes.view(dt).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("name", ORACLES)
def test_decode_every_code_matches_oracle(name):
    codes = np.arange(1 << B.layout(name).bits)
    ours = B.decode(name, codes)
    ref = _oracle_values(name)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert np.array_equal(ours[ok], ref[ok])
    assert np.array_equal(np.signbit(ours[ok]), np.signbit(ref[ok]))   # -0.0 keeps its sign


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_decode_fp32_raw_bits(code):
    ref = np.array(code, dtype=np.uint32).view(np.float32).astype(np.float64)
    ours = B.decode("fp32", code)
    assert (np.isnan(ours) and np.isnan(ref)) or ours == ref


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e5m2", "fp8_e4m3", "fp4_e2m1"])
@settings(max_examples=150, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_encode_rounds_like_the_oracle(name, x):
    lay = B.layout(name)
    finite = B.decode(lay, np.arange(1 << lay.bits))
    top = np.nanmax(np.where(np.isfinite(finite), finite, np.nan))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = float(np.float32(x).astype(ORACLES[name]).astype(np.float32))
    got = float(B.decode(name, B.encode(name, x)))
    if lay.specials != "ieee" and abs(x) > top:      # fn/none formats: we saturate, casts may not
        assert got == np.copysign(top, x)
    else:
        assert got == ref or (np.isnan(got) and np.isnan(ref)), (x, got, ref)


def test_encode_ties_go_to_even():
    # 1 + 2^-8 lies exactly between bf16 1.0 and 1.0078125: ties-to-even picks 1.0
    assert B.encode("bf16", 1 + 2**-8) == 0x3F80
    assert B.encode("bf16", 1 + 3 * 2**-8) == 0x3F82
    assert B.encode("fp8_e4m3", 1.0625) == 0x38          # between 1.0 and 1.125


@pytest.mark.parametrize("name", list(B.LAYOUTS))
def test_flip_state_fields_rebuild_the_code(name):
    lay = B.layout(name)
    rng = np.random.default_rng(0)
    for code in rng.integers(0, 1 << lay.bits, 200):
        st_ = B.flip_state(name, int(code))
        assert int(st_["bits"], 2) == code
        assert (st_["sign"] << (lay.bits - 1)) | (st_["exponent"] << lay.man_bits) | st_["mantissa"] == code
        assert len(st_["roles"]) == lay.bits
        v = float(B.decode(name, int(code)))
        assert (np.isnan(v) and st_["kind"] == "nan") or st_["value"] == v


def test_bad_inputs_raise_quantlab_errors():
    with pytest.raises(FormatError, match="known"):
        B.layout("fp7")
    with pytest.raises(InputError, match="16-bit"):
        B.split("fp16", 1 << 16)


def test_bit_flipper_click_changes_value_for_every_bit():
    w = B.bit_flipper("fp16", value=1.0)
    assert w.state()["code"] == 0x3C00
    for i, button in enumerate(w.bit_buttons):
        before = w.state()["code"]
        button.value = not button.value                 # a click
        after = w.state()["code"]
        assert after == before ^ (1 << (15 - i))        # exactly that bit flipped
        shown = B.flip_state("fp16", after)
        assert f"{shown['value']:.10g}" in w.shown.value
        button.value = not button.value                 # click back
    assert w.state()["code"] == 0x3C00


def test_bit_flipper_value_box_and_format_picker():
    w = B.bit_flipper("bf16", value=1.0)
    w.value_box.value = -2.5
    assert w.state()["code"] == B.encode("bf16", -2.5) == 0xC020
    w.format_picker.value = "fp8_e4m3"
    assert len(w.bit_buttons) == 8
    assert w.state()["value"] == -2.5
    w.bit_buttons[0].value = False                      # clear the sign bit
    assert w.value_box.value == 2.5


def test_plot_bit_boxes_draws_one_box_per_bit():
    ax = B.plot_bit_boxes("bf16", 0x3F80)
    assert len(ax.patches) == 16
    texts = [t.get_text() for t in ax.texts]
    assert "".join(texts[:16]) == "0011111110000000"
