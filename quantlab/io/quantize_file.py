"""Quantize a GGUF model file tensor by tensor, as ``llama-quantize`` does (spec §9, §10).

    report = quantize_file("model-f32.gguf", "model-q4_k_m.gguf", "Q4_K_M", imatrix="m.imatrix.gguf")
    report.records[0]      # TensorRecord(name, shape, type_in, type_out, bytes_in, bytes_out, ...)
    print(report.summary())

The flow, one tensor at a time from the memory-mapped input:

    choose every tensor's type   (quantlab.formats.ggml.mixes, llama-quantize's rules)
    write the header             (metadata copied in order; general.quantization_version and
                                  general.file_type re-appended at the end; imatrix keys after)
    for each tensor in llama-quantize's order (layer number, then name):
        same type as the source  -> copy the bytes
        otherwise, rows in chunks: source bytes -> float32 -> the new type's bytes -> file

Peak memory is one chunk of rows (about ``chunk_elements`` floats plus the quantizer's
temporaries), not the model.  Rows are independent in every ggml type (with an imatrix the
legacy types look at whole rows, which a chunk always holds), so chunking never changes bytes.
The output is written atomically: on any error no output file appears and an existing one
is untouched.

Policies follow llama-quantize: quantized sources are only re-quantized with
``allow_requantize`` (re-quantizing compounds two rounding errors) — except the F32 file
type, which just decodes every tensor (how the F32 source of the mixes was made from the
shipped Q4_1 model); imatrix vectors must have the tensor's row length (token_embd excepted);
Q2_K_S needs an imatrix.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError, QuantlabError, ShapeError
from ..formats.ggml import by_type
from ..formats.ggml import mixes
from .gguf import GGUFFile, GGUFValue, ValueType, tensor_nbytes
from .gguf_write import TensorSpec, write_gguf
from .imatrix import read_imatrix

__all__ = ["quantize_file", "QuantizeReport", "TensorRecord", "resolve_type"]

FLOAT_TYPES = ("F32", "F16", "BF16")
QUANTIZATION_VERSION = 2            # GGML_QNT_VERSION
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
MIB = 1024 * 1024


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    type_in: str
    type_out: str
    bytes_in: int
    bytes_out: int
    action: str          # "copy" (same type: bytes copied) or "quantize"
    imatrix: bool        # an importance vector was used

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class QuantizeReport:
    source: Path
    output: Path | None                  # None for a dry run
    ftype: str                           # canonical llama.cpp file type, e.g. "Q4_K_M"
    file_type: int                       # the number stored in general.file_type
    records: list[TensorRecord] = field(default_factory=list)
    seconds: float = 0.0
    imatrix_file: str | None = None
    imatrix_missing: list[str] = field(default_factory=list)   # quantized without an entry

    @property
    def n_elements(self) -> int:
        return sum(r.n_elements for r in self.records)

    @property
    def bytes_in(self) -> int:
        return sum(r.bytes_in for r in self.records)

    @property
    def bytes_out(self) -> int:
        return sum(r.bytes_out for r in self.records)

    @property
    def bpw_in(self) -> float:
        return 8.0 * self.bytes_in / self.n_elements

    @property
    def bpw_out(self) -> float:
        return 8.0 * self.bytes_out / self.n_elements

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.type_out] = out.get(r.type_out, 0) + 1
        return out

    def summary(self) -> str:
        """llama-quantize's closing lines: sizes and bits per weight before and after."""
        mix = ", ".join(f"{n} {t}" for t, n in sorted(self.type_counts().items()))
        lines = [f"model size  = {self.bytes_in / MIB:8.2f} MiB ({self.bpw_in:.2f} BPW)",
                 f"quant size  = {self.bytes_out / MIB:8.2f} MiB ({self.bpw_out:.2f} BPW)",
                 f"{self.ftype} (file type {self.file_type}): {len(self.records)} tensors: {mix}"]
        if self.imatrix_missing:
            lines.append(f"no imatrix entry for {len(self.imatrix_missing)} quantized tensor(s), "
                         f"e.g. {self.imatrix_missing[0]}")
        if self.output is not None:
            lines.append(f"wrote {self.output} in {self.seconds:.1f} s")
        return "\n".join(lines)


def resolve_type(type_name: str, pure: bool = False) -> str:
    """The llama.cpp file type for a CLI TYPE: an ftype ("Q4_K_M", alias "Q4_K") or, with
    ``pure``, a single block type stored under the ftype whose default type it is."""
    try:
        return mixes.resolve_ftype(type_name)
    except FormatError:
        pass
    key = str(type_name).upper()
    by_default = {T: ft for ft, (_, T) in mixes.FTYPES.items()}
    if key in by_default:
        if not pure:
            raise FormatError(f"{type_name!r} is a block type, not a llama.cpp file type; use "
                              f"--pure for every tensor in {key}, or the file type "
                              f"{by_default[key]}")
        return by_default[key]
    raise FormatError(f"unknown TYPE {type_name!r}; file types: {', '.join(mixes.FTYPES)} "
                      f"(aliases {', '.join(mixes.ALIASES)}); with --pure also the block types "
                      f"{', '.join(sorted(set(by_default) - set(mixes.FTYPES)))}")


def _check_type(t: str | None) -> str | None:
    if t is None:
        return None
    return by_type(t).ggml_name        # FormatError lists the supported ggml types


def quantize_file(src, dst, type_name: str, *, imatrix=None, pure: bool = False,
                  output_tensor_type: str | None = None, token_embedding_type: str | None = None,
                  allow_requantize: bool = False, leave_output_tensor: bool = False,
                  dry_run: bool = False, progress: bool = True,
                  chunk_elements: int = 1 << 21) -> QuantizeReport:
    """Quantize GGUF ``src`` into ``dst`` with a llama.cpp file type; see the module docstring.

    Returns a :class:`QuantizeReport` (one record per tensor).  Raises a
    :class:`~quantlab.QuantlabError` naming the file, tensor and problem before anything is
    written where possible, and never leaves a partial ``dst``.
    """
    t0 = time.perf_counter()
    src = Path(src)
    ftype = resolve_type(type_name, pure)
    file_type, _ = mixes.FTYPES[ftype]
    out_t = _check_type(output_tensor_type)
    emb_t = _check_type(token_embedding_type)
    g = GGUFFile(src)

    im, imp = None, {}
    if imatrix is not None:
        im = read_imatrix(imatrix)
        imp = im.importance()
        if not set(imp) & set(g.tensors):
            raise InputError(f"imatrix {imatrix}: none of its {len(imp)} entries (e.g. "
                             f"{next(iter(imp))!r}) names a tensor of {src}; is it for another model?")

    try:
        types = mixes.choose_types([(t.name, t.shape, t.type_name) for t in g.tensors.values()],
                                   ftype, has_imatrix=im is not None, pure=pure,
                                   output_tensor_type=out_t, token_embedding_type=emb_t,
                                   leave_output_tensor=leave_output_tensor,
                                   **mixes.model_params(g.metadata))
    except ShapeError as exc:                 # a row length no type of the mix can hold
        raise ShapeError(f"{src}: {exc}") from None
    report = QuantizeReport(src, None if dry_run else Path(dst), ftype, file_type,
                            imatrix_file=None if imatrix is None else str(imatrix))
    plan = []
    for name, type_out in types.items():
        t = g.tensors[name]
        vec = _plan_tensor(src, t, type_out, ftype, imp if im is not None else None,
                           allow_requantize)
        if type_out != t.type_name and im is not None and vec is None:
            report.imatrix_missing.append(name)
        report.records.append(TensorRecord(
            name, t.shape, t.type_name, type_out, t.nbytes, tensor_nbytes(type_out, t.shape),
            "copy" if type_out == t.type_name else "quantize", vec is not None))
        plan.append((t, type_out, vec))
    if dry_run:
        report.seconds = time.perf_counter() - t0
        return report

    metadata = _output_metadata(g, file_type, imatrix, im, len(imp))
    specs = [TensorSpec(t.name, type_out, t.shape) for t, type_out, _ in plan]
    data = _tensor_data(g, plan, chunk_elements, progress)
    inputs = [src] + ([Path(imatrix)] if imatrix is not None else [])
    write_gguf(dst, metadata, specs, data, inputs=inputs)
    report.seconds = time.perf_counter() - t0
    return report


def _plan_tensor(src, t, type_out, ftype, imp, allow_requantize):
    """Check one conversion before anything is written; return its importance vector or None."""
    where = f"{src}: tensor {t.name!r} ({t.type_name}, shape {t.shape})"
    try:
        tensor_nbytes(type_out, t.shape)
    except QuantlabError:
        raise ShapeError(f"{where}: row length {t.shape[-1]} does not fit {type_out}") from None
    if type_out == t.type_name:
        return None
    for ty in (t.type_name, type_out):
        try:
            by_type(ty)
        except FormatError:
            raise FormatError(f"{where}: quantlab has no ggml format {ty} to convert "
                              f"{t.type_name} -> {type_out}") from None
    if t.type_name not in FLOAT_TYPES and ftype != "F32" and not allow_requantize:
        raise InputError(f"{where}: the source is already quantized; re-quantizing to {type_out} "
                         "compounds two rounding errors. Pass --allow-requantize, or decode to "
                         "F32 first (quantlab quantize IN OUT F32)")
    vec = None if imp is None else imp.get(t.name)
    if vec is not None:
        n_mat = t.shape[-3] if len(t.shape) >= 3 else 1
        if vec.size != t.shape[-1] * n_mat:
            if mixes.category(t.name) != "token_embd":     # llama.cpp tolerates only token_embd
                raise ShapeError(f"{where}: imatrix entry has {vec.size} values, the tensor needs "
                                 f"{t.shape[-1] * n_mat} (row length x matrices)")
            vec = None
    if vec is None and mixes.requires_imatrix(t.name, type_out, ftype):
        raise InputError(f"{where}: {ftype} needs an importance matrix for {type_out} tensors "
                         "(--imatrix FILE)")
    return vec


def _output_metadata(g: GGUFFile, file_type: int, imatrix, im, n_entries: int) -> dict:
    """Input KVs in order minus split keys; then the keys llama-quantize sets (re-appended)."""
    out = {k: v for k, v in g.kv.items() if k not in SPLIT_KEYS}

    def set_(key, value: GGUFValue):          # gguf_set_val_*: remove, then append at the end
        out.pop(key, None)
        out[key] = value

    set_("general.quantization_version", GGUFValue(ValueType.UINT32, QUANTIZATION_VERSION))
    set_("general.file_type", GGUFValue(ValueType.UINT32, file_type))
    if im is not None:
        # llama-quantize's KV overrides (strings cut to 127 bytes like its strncpy)
        set_("quantize.imatrix.file", GGUFValue(ValueType.STRING, str(imatrix)[:127]))
        if im.datasets:
            set_("quantize.imatrix.dataset", GGUFValue(ValueType.STRING, im.datasets[0][:127]))
        set_("quantize.imatrix.entries_count", GGUFValue(ValueType.UINT32, n_entries))
        if im.chunk_count > 0:
            set_("quantize.imatrix.chunks_count", GGUFValue(ValueType.UINT32, im.chunk_count))
    return out


def _tensor_data(g: GGUFFile, plan, chunk_elements, progress):
    """Yield, per tensor, its output bytes: the source view, or a generator of row chunks."""
    from tqdm.auto import tqdm
    with tqdm(plan, desc="quantizing", unit="tensor", disable=not progress, leave=False) as bar:
        for t, type_out, vec in bar:
            bar.set_postfix_str(f"{t.name} -> {type_out}", refresh=False)
            if type_out == t.type_name:
                yield t.data
            else:
                yield _convert(g.path, t, type_out, vec, chunk_elements)
            g.release(t.name)          # written: let the OS drop the input pages


def _convert(src, t, type_out, vec, chunk_elements):
    """Rows of ``t`` decoded to float32 and re-encoded as ``type_out``, a chunk at a time."""
    fin, fout = by_type(t.type_name), by_type(type_out)
    n = t.shape[-1]                                        # row length (GGUF ne[0])
    n_rows = t.n_elements // n if n else 0
    if n_rows == 0:                                        # empty tensor: no bytes
        return
    rows_per_mat = t.shape[-2] if len(t.shape) >= 2 else 1  # ne[1]: rows of one matrix/expert
    raw = t.data.reshape(n_rows, -1)                       # (rows, bytes per input row)
    step = max(1, min(rows_per_mat, chunk_elements // max(n, 1)))
    try:
        for m0 in range(0, n_rows, rows_per_mat):          # one matrix (expert) at a time:
            qw = None if vec is None else vec[(m0 // rows_per_mat) * n:][:n]   # its imatrix slice
            for r0 in range(m0, min(m0 + rows_per_mat, n_rows), step):
                r1 = min(r0 + step, m0 + rows_per_mat, n_rows)
                x = fin.from_bytes(raw[r0:r1], (r1 - r0, n)).dequantize()      # (rows, n) f32
                yield fout.quantize(x, imatrix=qw).data                       # (rows, out bytes)
    except QuantlabError as exc:
        raise type(exc)(f"{src}: tensor {t.name!r} ({t.type_name} -> {type_out}): {exc}") from None
