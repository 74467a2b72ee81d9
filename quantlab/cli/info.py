"""``quantlab info FILE``: metadata and a per-tensor table of a GGUF (or safetensors) file."""
from __future__ import annotations

from pathlib import Path

from ..errors import GGUFError
from ..io.gguf import GGUF_MAGIC, GGUFFile
from .formats import print_table


def info(path) -> dict:
    """``{"path", "format", "metadata", "tensors": [records], "total": record}`` of a file.

    Each tensor record: name, type, shape (NumPy order: rows, cols), n_elements, bytes, bpw.
    """
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == GGUF_MAGIC:
        g = GGUFFile(path)
        fmt, metadata = f"GGUF v{g.version}", dict(g.metadata)
        items = [(t.name, t.type_name, t.shape, t.nbytes) for t in g.tensors.values()]
    else:
        from ..io.safetensors import SafetensorsFile
        st = SafetensorsFile(path)
        fmt, metadata = "safetensors", dict(st.metadata)
        items = [(t.name, t.dtype, t.shape, t.nbytes) for t in st.tensors.values()]
    records = [{"name": n, "type": ty, "shape": tuple(s), "n_elements": _prod(s), "bytes": b,
                "bpw": 8.0 * b / _prod(s) if _prod(s) else 0.0} for n, ty, s, b in items]
    n = sum(r["n_elements"] for r in records)
    nbytes = sum(r["bytes"] for r in records)
    total = {"name": f"total ({len(records)} tensors)", "type": "", "shape": (), "n_elements": n,
             "bytes": nbytes, "bpw": 8.0 * nbytes / n if n else 0.0}
    return {"path": path, "format": fmt, "metadata": metadata, "tensors": records, "total": total}


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def _short(value, width: int = 72) -> str:
    """A metadata value on one line; long arrays as their length and first items."""
    if isinstance(value, list) and len(value) > 8:
        kind = type(value[0]).__name__ if value else "item"
        head = ", ".join(repr(v) for v in value[:4])
        text = f"[{len(value)} {kind}s: {head}, ...]"
    else:
        text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 3] + "..."


def run(args) -> int:
    d = info(args.file)
    print(f"{d['path']}: {d['format']}, {len(d['tensors'])} tensors")
    if d["metadata"]:
        width = max(len(k) for k in d["metadata"])
        for k, v in d["metadata"].items():
            print(f"  {k.ljust(width)}  {_short(v)}")
    print()
    rows = [{**r, "shape": "x".join(map(str, r["shape"]))} for r in d["tensors"] + [d["total"]]]
    print_table(rows, [("name", "tensor", ""), ("type", "type", ""), ("shape", "shape", ""),
                       ("bytes", "bytes", ",d"), ("bpw", "bits/weight", ".3f")])
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show a GGUF/safetensors file's metadata and tensors",
                       description="Print a model file's metadata and a table of its tensors "
                                   "(name, type, shape as rows x cols, bytes, bits per weight) "
                                   "with totals.")
    p.add_argument("file", help="a .gguf (model or imatrix) or .safetensors file")
    p.set_defaults(func=run)
