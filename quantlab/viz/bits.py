"""Floats as bits: colour-coded bit boxes and the bit-flipper widget (lesson 2).

A binary float with ``E`` exponent bits and ``M`` mantissa bits stores a code
``s | e | m`` (sign, biased exponent, mantissa) and means::

    normal      (e ≠ 0):  value = (-1)^s · 2^(e - bias) · (1 + m / 2^M),   bias = 2^(E-1) - 1
    subnormal   (e = 0):  value = (-1)^s · 2^(1 - bias) · (m / 2^M)

and at the top exponent either IEEE's Inf/NaN (FP32, FP16, BF16, FP8 E5M2), only one NaN
pattern ``S.1111.111`` (FP8 E4M3 "fn": finite-only, no Inf), or nothing at all (FP4 E2M1).

:func:`decode` below is exactly that formula, and the tests check it against NumPy and
ml_dtypes for every code of every ≤16-bit layout.  :func:`flip_state` is the widget's pure
callback (code -> everything the widget shows), so the widget is tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, InputError
from .style import ROLE_COLORS, new_axes, style

__all__ = ["FloatLayout", "LAYOUTS", "layout", "decode", "encode", "split", "flip_state",
           "plot_bit_boxes", "bit_flipper"]


@dataclass(frozen=True)
class FloatLayout:
    """Field widths and special-value convention of a binary float format."""

    name: str
    exp_bits: int
    man_bits: int
    specials: str = "ieee"   # "ieee" (Inf + NaNs at top exponent) | "fn" (one NaN) | "none"

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1


LAYOUTS = {lay.name: lay for lay in [
    FloatLayout("fp32", 8, 23), FloatLayout("fp16", 5, 10), FloatLayout("bf16", 8, 7),
    FloatLayout("fp8_e5m2", 5, 2), FloatLayout("fp8_e4m3", 4, 3, "fn"),
    FloatLayout("fp4_e2m1", 2, 1, "none"),
]}


def layout(name: str | FloatLayout) -> FloatLayout:
    """The :class:`FloatLayout` called ``name`` (fp32, fp16, bf16, fp8_e5m2, fp8_e4m3, fp4_e2m1)."""
    if isinstance(name, FloatLayout):
        return name
    try:
        return LAYOUTS[str(name).lower()]
    except KeyError:
        raise FormatError(f"no bit layout for {name!r}; known: {', '.join(LAYOUTS)}") from None


def split(fmt, code):
    """``code`` (int or int array) -> ``(sign, exponent, mantissa)`` fields."""
    lay = layout(fmt)
    code = np.asarray(code, dtype=np.int64)
    if np.any(code < 0) or np.any(code >= 1 << lay.bits):
        raise InputError(f"{lay.name} codes are {lay.bits}-bit integers 0..{(1 << lay.bits) - 1}")
    man = code & ((1 << lay.man_bits) - 1)
    exp = (code >> lay.man_bits) & ((1 << lay.exp_bits) - 1)
    sign = code >> (lay.bits - 1)
    return sign, exp, man


def decode(fmt, code) -> np.ndarray:
    """Value(s) of bit pattern(s) ``code`` as float64, by the formula in the module docstring."""
    lay = layout(fmt)
    s, e, m = split(lay, code)
    frac = m / 2.0 ** lay.man_bits
    # value = (-1)^s · 2^(e - bias) · (1 + m/2^M)   normal
    #       = (-1)^s · 2^(1 - bias) · (m/2^M)       subnormal (e = 0)
    mag = np.where(e == 0, np.ldexp(frac, 1 - lay.bias), np.ldexp(1.0 + frac, e - lay.bias))
    top = e == (1 << lay.exp_bits) - 1
    if lay.specials == "ieee":
        mag = np.where(top, np.where(m == 0, np.inf, np.nan), mag)
    elif lay.specials == "fn":
        mag = np.where(top & (m == (1 << lay.man_bits) - 1), np.nan, mag)
    return np.where(s == 1, -mag, mag)


def _table(lay: FloatLayout):
    """All finite codes of a small layout with their values (cached)."""
    cache = _table.__dict__.setdefault("cache", {})
    if lay.name not in cache:
        codes = np.arange(1 << lay.bits, dtype=np.int64)
        vals = decode(lay, codes)
        keep = np.isfinite(vals)
        cache[lay.name] = (codes[keep], vals[keep])
    return cache[lay.name]


def encode(fmt, x: float) -> int:
    """Nearest code to ``x`` (round to nearest, ties to even mantissa, saturating for fn/none).

    FP32 and FP16 use NumPy's own casts; the others search the table of finite values.
    """
    lay = layout(fmt)
    x = float(x)
    if lay.name == "fp32":
        return int(np.float32(x).view(np.uint32))
    if lay.name == "fp16":
        with np.errstate(over="ignore"):        # overflow to ±Inf is the defined result
            return int(np.float16(x).view(np.uint16))
    if np.isnan(x):
        return (1 << lay.bits) - 1 if lay.specials != "none" else 0
    codes, vals = _table(lay)
    maxf = vals.max()
    if lay.specials == "ieee":
        # IEEE overflow: from max + half an ulp of the top binade on, round to Inf
        e_max = (1 << lay.exp_bits) - 2 - lay.bias
        if abs(x) >= maxf + 2.0 ** (e_max - lay.man_bits - 1):
            inf_code = ((1 << lay.exp_bits) - 1) << lay.man_bits
            return int(inf_code | (int(x < 0) << (lay.bits - 1)))
    x = float(np.clip(x, -maxf, maxf))          # saturate (the Inf case returned above)
    dist = np.abs(vals - x)
    best = np.flatnonzero(dist == dist.min())
    # ties: prefer the even mantissa, then the code with x's sign (so -0.0 keeps its sign)
    best = sorted(best, key=lambda i: (codes[i] & 1, (vals[i] < 0) != (np.signbit(x))))
    return int(codes[best[0]])


def flip_state(fmt, code: int) -> dict:
    """Everything the bit-flipper shows for ``code``: the widget's pure callback."""
    lay = layout(fmt)
    s, e, m = (int(v) for v in split(lay, code))
    value = float(decode(lay, code))
    bits = format(int(code), f"0{lay.bits}b")
    if e == (1 << lay.exp_bits) - 1 and lay.specials == "ieee":
        kind = "inf" if m == 0 else "nan"
    elif lay.specials == "fn" and e == (1 << lay.exp_bits) - 1 and m == (1 << lay.man_bits) - 1:
        kind = "nan"
    elif e == 0:
        kind = "zero" if m == 0 else "subnormal"
    else:
        kind = "normal"
    if kind == "normal":
        formula = (f"(-1)^{s} · 2^({e} - {lay.bias}) · (1 + {m}/2^{lay.man_bits})")
    elif kind in ("subnormal", "zero"):
        formula = f"(-1)^{s} · 2^(1 - {lay.bias}) · ({m}/2^{lay.man_bits})"
    else:
        formula = "exponent all ones: " + ("±Inf" if kind == "inf" else "NaN")
    return {"format": lay.name, "code": int(code), "bits": bits,
            "hex": f"0x{int(code):0{(lay.bits + 3) // 4}X}", "sign": s, "exponent": e,
            "mantissa": m, "kind": kind, "value": value, "formula": formula,
            "roles": ["sign"] + ["exponent"] * lay.exp_bits + ["mantissa"] * lay.man_bits}


def plot_bit_boxes(fmt, code: int, ax=None, *, y: float = 0.0, label: str | None = None):
    """Draw the bits of ``code`` as coloured boxes (sign red, exponent green, mantissa blue)."""
    from matplotlib.patches import Rectangle
    st = flip_state(fmt, code)
    with style():
        ax = new_axes(ax, figsize=(7.5, 1.0))
        for i, (b, role) in enumerate(zip(st["bits"], st["roles"])):
            ax.add_patch(Rectangle((i, y), 0.92, 0.8, color=ROLE_COLORS[role], alpha=0.85))
            ax.text(i + 0.46, y + 0.4, b, ha="center", va="center", color="white",
                    fontsize=8, fontweight="bold")
        text = label if label is not None else st["format"]
        ax.text(-0.6, y + 0.4, text, ha="right", va="center", fontsize=9)
        ax.text(len(st["bits"]) + 0.6, y + 0.4, f"= {st['value']:.9g}", ha="left", va="center",
                fontsize=9)
        ax.set_xlim(-7, max(ax.get_xlim()[1], len(st["bits"]) + 9))
        ax.set_ylim(min(ax.get_ylim()[0], y - 0.2), max(ax.get_ylim()[1], y + 1.0))
        ax.set_axis_off()
    return ax


def bit_flipper(fmt: str = "bf16", value: float = 1.0, formats=("fp32", "fp16", "bf16",
                                                                  "fp8_e4m3", "fp8_e5m2")):
    """A widget: one toggle button per bit, a format picker and a value box.

    Click a bit and the value below changes; type a value and the bits follow.  Returns an
    ``ipywidgets.VBox``; its ``.state()`` gives the current :func:`flip_state` dict and
    ``.bit_buttons`` the toggles (index 0 = sign bit), which is what the tests drive.
    """
    import ipywidgets as W
    pick = W.Dropdown(options=list(formats), value=layout(fmt).name, description="format")
    box = W.FloatText(value=value, description="value", step=None)
    buttons_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
    shown = W.HTML()
    ui = W.VBox([W.HBox([pick, box]), buttons_box, shown])
    ui.add_class("quantlab-bit-flipper")
    busy = {"on": False}

    def current_code() -> int:
        return int("".join("1" if b.value else "0" for b in ui.bit_buttons), 2)

    def render(code: int) -> None:
        st = flip_state(pick.value, code)
        busy["on"] = True
        try:
            for b, bit, role in zip(ui.bit_buttons, st["bits"], st["roles"]):
                b.value = bit == "1"
                b.description = bit
                b.style.button_color = ROLE_COLORS[role] if bit == "1" else "#eeeeee"
        finally:
            busy["on"] = False
        shown.value = (f"<div class='quantlab-value' style='font-family:monospace'>"
                       f"<b>{st['bits'][0]} | {st['bits'][1:1 + layout(pick.value).exp_bits]} | "
                       f"{st['bits'][1 + layout(pick.value).exp_bits:]}</b> ({st['hex']}, {st['kind']})"
                       f"<br>{st['formula']} = <b class='quantlab-shown'>{st['value']:.10g}</b></div>")

    def build(name: str) -> None:
        lay = layout(name)
        ui.bit_buttons = [W.ToggleButton(description="0", tooltip=r,
                                         layout=W.Layout(width="28px", padding="0"))
                          for r in ["sign"] + ["exponent"] * lay.exp_bits + ["mantissa"] * lay.man_bits]
        for b in ui.bit_buttons:
            b.observe(on_bit, names="value")
        buttons_box.children = ui.bit_buttons
        render(encode(name, box.value))

    def on_bit(_change) -> None:
        if not busy["on"]:
            code = current_code()
            render(code)
            value = flip_state(pick.value, code)["value"]
            if np.isfinite(value):      # the value box cannot show Inf/NaN (JSON has none)
                busy["on"] = True
                try:
                    box.value = value
                finally:
                    busy["on"] = False

    def on_value(change) -> None:
        if not busy["on"]:
            render(encode(pick.value, change["new"]))

    pick.observe(lambda ch: build(ch["new"]), names="value")
    box.observe(on_value, names="value")
    ui.state = lambda: flip_state(pick.value, current_code())
    ui.format_picker, ui.value_box, ui.shown = pick, box, shown
    build(pick.value)
    return ui
