"""The bit-flipper and bit boxes: every state they show checked against NumPy / ml_dtypes."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quantlab import FormatError, InputError
from quantlab.viz import bits as B

ORACLES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp8_e5m2": ml_dtypes.float8_e5m2,
           "fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp4_e2m1": ml_dtypes.float4_e2m1fn}
N_BITS = {"fp16": 16, "bf16": 16, "fp8_e5m2": 8, "fp8_e4m3": 8, "fp4_e2m1": 4}


def _oracle(name, codes):
    dt = np.dtype(ORACLES[name])
    with np.errstate(invalid="ignore"):
        return np.asarray(codes, dtype=f"u{dt.itemsize}").view(dt).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("name", ORACLES)
def test_flip_state_over_every_code(name):
    """The widget's callback over its whole domain: value, fields and kind for all codes."""
    n = N_BITS[name]
    ref = _oracle(name, np.arange(1 << n))
    for code in range(1 << n):
        s = B.flip_state(name, code)
        v, r = s["value"], ref[code]
        assert (np.isnan(v) and np.isnan(r)) or (v == r and np.signbit(v) == np.signbit(r)), (code, v, r)
        assert int(s["bits"], 2) == code and "".join(s["fields"]) == s["bits"]
        assert len(s["roles"]) == n and s["roles"][0] == "sign"
        assert s["kind"] == ("nan" if np.isnan(r) else "inf" if np.isinf(r) else
                             "zero" if r == 0 else
                             "subnormal" if abs(r) < B.float_format(name).smallest_normal else "normal")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_flip_state_fp32_raw_bits(code):
    ref = np.array(code, dtype=np.uint32).view(np.float32)
    v = B.flip_state("fp32", code)["value"]
    assert (np.isnan(v) and np.isnan(ref)) or v == ref


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e5m2"])
@settings(max_examples=100, deadline=None)
@given(x=st.floats(allow_nan=False, width=32))
def test_typing_a_value_rounds_like_the_oracle(name, x):
    with np.errstate(over="ignore"):
        ref = np.float32(x).astype(ORACLES[name]).astype(np.float64)
    got = B.flip_state(name, B.encode_one(name, x))["value"]
    assert got == ref, (x, got, ref)


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp4_e2m1"])
def test_typing_a_big_value_saturates_in_formats_without_inf(name):
    top = B.float_format(name).max
    assert B.flip_state(name, B.encode_one(name, 1e9))["value"] == top
    assert B.flip_state(name, B.encode_one(name, -1e9))["value"] == -top


def test_bad_inputs_raise_quantlab_errors():
    with pytest.raises(FormatError, match="element-wise float"):
        B.float_format("q4_0")
    with pytest.raises(FormatError, match="unknown format"):
        B.flip_state("fp7", 0)
    with pytest.raises(InputError, match="16-bit"):
        B.flip_state("fp16", 1 << 16)


def test_bit_flipper_click_changes_value_for_every_bit():
    w = B.bit_flipper("fp16", value=1.0)
    assert w.state()["code"] == 0x3C00
    for i, button in enumerate(w.bit_buttons):
        before = w.state()["code"]
        button.value = not button.value                 # a click
        after = w.state()["code"]
        assert after == before ^ (1 << (15 - i))        # exactly that bit flipped
        expected = B.flip_state("fp16", after)
        assert f"{expected['value']:.10g}</b>" in w.shown.value
        if np.isfinite(expected["value"]):
            assert w.value_box.value == expected["value"]
        button.value = not button.value                 # click back
    assert w.state()["code"] == 0x3C00


def _expected_styles(code, n_bits, n_exp):
    """Set bits coloured by field (sign red, exponent green, mantissa blue), clear bits grey."""
    field = ["danger"] + ["success"] * n_exp + ["primary"] * (n_bits - 1 - n_exp)
    return [field[i] if code >> (n_bits - 1 - i) & 1 else "" for i in range(n_bits)]


def test_bit_flipper_colours_set_bits_by_field():
    w = B.bit_flipper("fp16", value=1.0)                # 0 01111 0000000000
    assert [b.button_style for b in w.bit_buttons] == _expected_styles(0x3C00, 16, 5)
    assert [b.description for b in w.bit_buttons] == list(format(0x3C00, "016b"))
    for i, code in [(15, 0x3C01), (0, 0xBC01), (1, 0xFC01)]:   # mantissa, sign, exponent bit
        w.bit_buttons[i].value = True
        assert w.state()["code"] == code
        assert [b.button_style for b in w.bit_buttons] == _expected_styles(code, 16, 5)
    w.format_picker.value = "fp8_e5m2"                  # rebuilt buttons are coloured too
    code = w.state()["code"]
    assert [b.button_style for b in w.bit_buttons] == _expected_styles(code, 8, 5)


def test_bit_flipper_value_box_and_format_picker():
    w = B.bit_flipper("bf16", value=1.0)
    w.value_box.value = -2.5
    assert w.state()["code"] == 0xC020
    w.format_picker.value = "fp8_e4m3"
    assert len(w.bit_buttons) == 8
    assert w.state()["value"] == -2.5
    w.bit_buttons[0].value = False                      # clear the sign bit
    assert w.value_box.value == 2.5
    w.bit_buttons[-1].value = True                      # 2.5 = 1.010b·2^1 -> 1.011b·2^1
    assert w.value_box.value == 2.75


def test_plot_bit_boxes_draws_one_box_per_bit():
    ax = B.plot_bit_boxes("bf16", 0x3F80)
    assert len(ax.patches) == 16
    assert "".join(t.get_text() for t in ax.texts[:16]) == "0011111110000000"
    assert ax.texts[-1].get_text() == "= 1"
