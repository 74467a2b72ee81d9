"""Floats as bits: colour-coded bit boxes and the bit-flipper widget (lesson 2).

The codec is quantlab's own (:class:`quantlab.formats.ieee.FloatFormat`: fp32, fp16, bf16,
fp8_e4m3, fp8_e5m2, fp4_e2m1, ...); this module only shows it.  A code ``s | e | m`` means::

    normal      (e ≠ 0):  value = (-1)^s · 2^(e - bias) · (1 + m / 2^M)
    subnormal   (e = 0):  value = (-1)^s · 2^(1 - bias) · (m / 2^M)

:func:`flip_state` is the widget's pure callback (format + code -> everything the widget
shows), so the widget is tested over every code without a browser.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, InputError
from ..formats import get
from ..formats.ieee import FloatFormat
from .style import ROLE_COLORS, new_axes, style

__all__ = ["float_format", "flip_state", "encode_one", "plot_bit_boxes", "bit_flipper",
           "BUTTON_STYLES"]

# ipywidgets' predefined button styles closest to ROLE_COLORS (sign red, exponent green,
# mantissa blue); a ToggleButton takes no free colour, only one of these.
BUTTON_STYLES = {"sign": "danger", "exponent": "success", "mantissa": "primary"}


def float_format(fmt) -> FloatFormat:
    """The registered element-wise float format ``fmt`` (fp32, fp16, bf16, fp8_*, fp4_e2m1)."""
    f = get(fmt)
    if not isinstance(f, FloatFormat):
        raise FormatError(f"{f.name!r} is not an element-wise float format; bit boxes take "
                          "fp32, fp16, bf16, fp8_e4m3, fp8_e5m2, fp4_e2m1, ...")
    return f


def _kind(e: int, m: int, value: float) -> str:
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "inf"
    if e == 0:
        return "zero" if m == 0 else "subnormal"
    return "normal"


def flip_state(fmt, code: int) -> dict:
    """Everything the bit-flipper shows for ``code``: the widget's pure callback."""
    f = float_format(fmt)
    code = int(code)
    if not 0 <= code < 1 << f.n_bits:
        raise InputError(f"{f.name} codes are {f.n_bits}-bit integers 0..{(1 << f.n_bits) - 1}")
    fb = f.split(np.array(code))
    s, e, m = int(fb.sign), int(fb.exponent), int(fb.mantissa)
    value = float(f.decode(np.array(code)))
    kind = _kind(e, m, value)
    if kind == "normal":
        formula = f"(-1)^{s} · 2^({e} - {f.bias}) · (1 + {m}/2^{f.M})"
    elif kind in ("subnormal", "zero"):
        formula = f"(-1)^{s} · 2^(1 - {f.bias}) · ({m}/2^{f.M})"
    else:
        formula = "special code: " + ("±Inf" if kind == "inf" else "NaN")
    bits = format(code, f"0{f.n_bits}b")
    return {"format": f.name, "code": code, "bits": bits,
            "fields": (bits[0], bits[1:1 + f.E], bits[1 + f.E:]),
            "hex": f"0x{code:0{(f.n_bits + 3) // 4}X}", "sign": s, "exponent": e,
            "mantissa": m, "kind": kind, "value": value, "formula": formula,
            "roles": ["sign"] + ["exponent"] * f.E + ["mantissa"] * f.M}


def encode_one(fmt, x: float) -> int:
    """Code of ``x`` (round to nearest even; saturating where the format has no Inf)."""
    f = float_format(fmt)
    with np.errstate(over="ignore"):
        return int(f.encode(np.array([x], dtype=np.float64), saturate=not f.has_inf)[0])


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

    Click a bit and the value below changes; type a value and the bits follow.  A set bit
    shows "1" in its field's colour (:data:`BUTTON_STYLES`), a clear bit "0" in grey.  Returns an
    ``ipywidgets.VBox``; its ``.state()`` gives the current :func:`flip_state` dict and
    ``.bit_buttons`` the toggles (index 0 = sign bit), which is what the tests drive.
    """
    import ipywidgets as W
    pick = W.Dropdown(options=list(formats), value=float_format(fmt).name, description="format")
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
                # ToggleButton ignores style.button_color: a set bit takes its field's
                # button_style (sign red, exponent green, mantissa blue), a clear one stays grey
                b.button_style = BUTTON_STYLES[role] if bit == "1" else ""
        finally:
            busy["on"] = False
        shown.value = (f"<div class='quantlab-value' style='font-family:monospace'>"
                       f"<b>{' | '.join(st['fields'])}</b> ({st['hex']}, {st['kind']})"
                       f"<br>{st['formula']} = <b class='quantlab-shown'>{st['value']:.10g}</b></div>")

    def build(name: str) -> None:
        f = float_format(name)
        ui.bit_buttons = [W.ToggleButton(description="0", tooltip=r,
                                         layout=W.Layout(width="28px", padding="0"))
                          for r in ["sign"] + ["exponent"] * f.E + ["mantissa"] * f.M]
        for b in ui.bit_buttons:
            b.observe(on_bit, names="value")
        buttons_box.children = ui.bit_buttons
        render(encode_one(name, box.value))

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
            render(encode_one(pick.value, change["new"]))

    pick.observe(lambda ch: build(ch["new"]), names="value")
    box.observe(on_value, names="value")
    ui.state = lambda: flip_state(pick.value, current_code())
    ui.format_picker, ui.value_box, ui.shown = pick, box, shown
    build(pick.value)
    return ui
