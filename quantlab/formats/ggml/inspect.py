"""The block inspector: one block of a ggml tensor, byte by byte.

    >>> qt = quantlab.quantize(w, "q4_k")                  # doctest: +SKIP
    >>> view = quantlab.inspect(qt, block=3)               # doctest: +SKIP
    >>> print(view)                                        # doctest: +SKIP
    Q4_K block 3 of 8 (row 0, elements 768..1023): 144 bytes = 4.5 bits/weight
    offset  size  field   bytes                           decoded
    ------  ----  ------  ------------------------------  --------------------------
         0     2  d       a4 31                           0.1763
       ...

For every field of the format's :attr:`~GGMLFormat.layout` the view lists its byte offset,
size, raw bytes and decoded value (from the format's ``block_fields``), then the decoded
extras (``q`` — the integer level of each element —, sub-block scales and mins, …) and
the dequantized values.  In JupyterLab the view renders as a colour-coded byte map
(``_repr_html_``).  Works for every :class:`GGMLFormat`: legacy, K-quants, IQ4, ternary,
MXFP4 and the F32/F16/BF16 storage types.
"""
from __future__ import annotations

import html
import numbers
from dataclasses import dataclass, field

import numpy as np

from ...errors import FormatError, ShapeError
from ..base import QTensor
from .base import GGMLFormat

__all__ = ["inspect", "BlockView", "FieldView"]

# one fixed colour per field position (ColorBrewer Set3, readable under black text)
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69",
           "#fccde5", "#d9d9d9", "#bc80bd")
SHOW_ELEMENTS = 32      # text/HTML show this many elements; .q / .values hold them all


@dataclass(frozen=True)
class FieldView:
    """One stored field of the block: where it is, its bytes and what they mean."""

    name: str
    offset: int             # byte offset inside the block
    size: int               # bytes
    raw: np.ndarray         # (size,) uint8, as stored
    meaning: str            # the layout's description
    value: object = None    # decoded by the format (scalar or array), None if not decoded

    @property
    def hex(self) -> str:
        """The raw bytes as space-separated hex, in storage order."""
        return " ".join(f"{b:02x}" for b in self.raw)


@dataclass(frozen=True)
class BlockView:
    """Everything about one block; ``str()`` is a text table, ``_repr_html_`` a byte map."""

    format: GGMLFormat
    index: int              # block index over the whole tensor (rows flattened)
    n_blocks: int
    row: tuple              # index of the row (leading axes) holding the block
    start: int              # first element of the block inside its row
    raw: np.ndarray         # (type_size,) uint8
    fields: tuple           # FieldView per layout entry, in storage order
    decoded: dict = field(default_factory=dict)   # block_fields() entries that are not layout fields
    values: np.ndarray = None                      # (block_size,) float32, ggml's to_float

    @property
    def q(self) -> np.ndarray | None:
        """The integer level (code) of every element, as the format decodes it."""
        return self.decoded.get("q")

    def to_records(self) -> list[dict]:
        """The field table as plain records (name, offset, size, hex, value, meaning)."""
        return [{"name": f.name, "offset": f.offset, "size": f.size, "hex": f.hex,
                 "value": f.value, "meaning": f.meaning} for f in self.fields]

    # -- text ---------------------------------------------------------------------------
    def _title(self) -> str:
        fmt = self.format
        end = self.start + fmt.block_size - 1
        where = f"row {self.row[0] if len(self.row) == 1 else self.row}, " if self.row else ""
        return (f"{fmt.ggml_name} block {self.index} of {self.n_blocks} ({where}elements "
                f"{self.start}..{end}): {fmt.type_size} bytes = {fmt.bits_per_weight():.4g} bits/weight")

    def __str__(self) -> str:
        head = ("offset", "size", "field", "bytes", "decoded")
        rows = [(str(f.offset), str(f.size), f.name, _short_hex(f.raw), _summary(f.value))
                for f in self.fields]
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        fmt_row = lambda r: "  ".join([r[0].rjust(w[0]), r[1].rjust(w[1])] +  # noqa: E731
                                      [c.ljust(w[i + 2]) for i, c in enumerate(r[2:])]).rstrip()
        lines = [self._title(), fmt_row(head), fmt_row(tuple("-" * x for x in w))]
        lines += [fmt_row(r) for r in rows]
        for k, v in self.decoded.items():
            if k != "q":
                lines.append(f"{k}: {_summary(v, limit=16)}")
        n = min(SHOW_ELEMENTS, self.values.size)
        more = f", first {n} of {self.values.size}" if n < self.values.size else ""
        lines.append(f"elements (q = stored level, y = dequantized value{more}):")
        q = None if self.q is None else np.asarray(self.q).reshape(-1)
        for e0 in range(0, n, 8):                   # 8 elements per line pair
            es = range(e0, min(e0 + 8, n))
            if q is not None:
                lines.append(f"{self.start + e0:6d} q " + "".join(f"{q[e]:>10}" for e in es))
            lines.append(f"{'' if q is not None else self.start + e0:>6} y "
                         + "".join(f"{self.values[e]:>10.4g}" for e in es))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<BlockView {self._title()}>"

    # -- HTML ---------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        cells = []
        for i, f in enumerate(self.fields):
            colour = PALETTE[i % len(PALETTE)]
            for j, b in enumerate(f.raw):
                tip = html.escape(f"{f.name}[{j}] @ byte {f.offset + j}: 0x{b:02x} = {b}")
                cells.append(f'<span title="{tip}" style="background:{colour};font-family:monospace;'
                             f'padding:1px 3px;margin:1px;display:inline-block">{b:02x}</span>')
        byte_map = "".join(c + ("<br>" if (k + 1) % 16 == 0 else "") for k, c in enumerate(cells))
        legend = "".join(
            f'<tr><td style="background:{PALETTE[i % len(PALETTE)]}">&nbsp;&nbsp;&nbsp;</td>'
            f"<td><b>{html.escape(f.name)}</b></td><td>{f.offset}</td><td>{f.size}</td>"
            f"<td><code>{html.escape(_summary(f.value))}</code></td><td>{html.escape(f.meaning)}</td></tr>"
            for i, f in enumerate(self.fields))
        extras = "".join(f"<li><b>{html.escape(k)}</b>: <code>{html.escape(_summary(v, limit=16))}</code></li>"
                         for k, v in self.decoded.items() if k != "q")
        n = min(SHOW_ELEMENTS, self.values.size)
        q = None if self.q is None else np.asarray(self.q).reshape(-1)
        elems = "".join(f"<tr><td>{self.start + e}</td><td>{'' if q is None else q[e]}</td>"
                        f"<td>{self.values[e]:.7g}</td></tr>" for e in range(n))
        more = f" (first {n} of {self.values.size})" if n < self.values.size else ""
        return (f"<div><b>{html.escape(self._title())}</b>"
                f'<div style="margin:6px 0">{byte_map}</div>'
                "<table><tr><th></th><th>field</th><th>offset</th><th>bytes</th><th>decoded</th>"
                f"<th>meaning</th></tr>{legend}</table>"
                + (f"<ul>{extras}</ul>" if extras else "")
                + f"<details><summary>elements{more}</summary><table><tr><th>element</th><th>q</th>"
                f"<th>value</th></tr>{elems}</table></details></div>")


def _short_hex(raw: np.ndarray, limit: int = 10) -> str:
    s = " ".join(f"{b:02x}" for b in raw[:limit])
    return s + (f" … ({raw.size} bytes)" if raw.size > limit else "")


def _summary(v, limit: int = 8) -> str:
    """Short text for a decoded value: scalars as numbers, arrays by their first entries."""
    if v is None:
        return ""
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{a.item():.6g}" if a.dtype.kind == "f" else str(a.item())
    flat = a.reshape(-1)
    items = [f"{t:.4g}" if a.dtype.kind == "f" else str(t) for t in flat[:limit]]
    return "[" + ", ".join(items) + (f", … ({flat.size} values)]" if flat.size > limit else "]")


def inspect(qt: QTensor, block: int = 0) -> BlockView:
    """Show block ``block`` of the ggml-quantized tensor ``qt`` (see :class:`BlockView`).

    Blocks are numbered over the whole tensor, row after row (``n_blocks`` = rows ×
    blocks per row); negative indices count from the end, as in Python.
    """
    if not isinstance(qt, QTensor) or not isinstance(qt.format, GGMLFormat):
        what = (f"a QTensor of format {qt.format.name!r}" if isinstance(qt, QTensor)
                else f"a {type(qt).__name__}")
        raise FormatError(f"inspect() shows blocks of ggml block formats (q4_0, q4_k, iq4_xs, "
                          f"ggml_f16, …); got {what}")
    fmt = qt.format
    data = np.ascontiguousarray(qt.data).view(np.uint8).reshape(-1, fmt.type_size)
    n_blocks = data.shape[0]
    if not isinstance(block, numbers.Integral) or isinstance(block, bool):
        raise ShapeError(f"block must be an integer index, got {block!r}")
    if not -n_blocks <= block < n_blocks:
        raise ShapeError(f"block {block} is out of range: this {fmt.ggml_name} tensor of shape "
                         f"{qt.shape} has {n_blocks} blocks (valid: {-n_blocks}..{n_blocks - 1})")
    index = int(block) % n_blocks
    raw = data[index].copy()
    decoded = {k: np.asarray(v) for k, v in fmt.block_fields(raw).items()}
    fields, offset = [], 0
    for name, size, meaning in fmt.layout:
        fields.append(FieldView(name, offset, size, raw[offset:offset + size], meaning,
                                decoded.get(name)))
        offset += size
    per_row = qt.shape[-1] // fmt.block_size
    lead = qt.shape[:-1]
    row = tuple(int(i) for i in np.unravel_index(index // per_row, lead)) if lead else ()
    values = fmt.dequantize_blocks(raw[None, :])[0]
    extras = {k: v for k, v in decoded.items() if k not in {f.name for f in fields}}
    return BlockView(fmt, index, n_blocks, row, (index % per_row) * fmt.block_size, raw,
                     tuple(fields), extras, values)
