"""Read GGUF files memory-mapped (spec ``ggml-quants.md`` §9), through the ``gguf`` package.

    g = GGUFFile(path)
    g.metadata["llama.block_count"]      # plain Python values (str, int, float, bool, list)
    t = g.tensors["blk.0.attn_q.weight"] # TensorInfo: name, type_name, ggml_type, shape, data
    g.qtensor(t.name)                    # a QTensor over the file's bytes (no copy)
    g.dequantize(t.name)                 # float32, through quantlab's own format classes

Shapes are NumPy order: a GGUF tensor with ``ne = [cols, rows]`` has ``shape == (rows, cols)``;
the last axis is the contiguous row that ggml blocks run along.  Nothing is read into RAM
until a tensor's bytes are touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GGUFError

__all__ = ["GGUFFile", "TensorInfo"]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: int            # enum ggml_type id
    type_name: str            # ggml's spelling, e.g. "Q4_1"
    shape: tuple[int, ...]    # NumPy order (last axis = GGUF ne[0], the row)
    data: np.ndarray          # uint8 view into the memory-mapped file

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.n_elements


def _field_value(field) -> Any:
    value = field.contents()
    return value.item() if isinstance(value, np.generic) else value


class GGUFFile:
    """A GGUF file opened read-only and memory-mapped."""

    def __init__(self, path):
        import gguf
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{self.path}: no such file")
        try:
            reader = gguf.GGUFReader(self.path, "r")
        except Exception as exc:  # the gguf package raises ValueError/struct errors/IndexError
            raise GGUFError(f"{self.path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None
        self._reader = reader
        try:
            self.metadata: dict[str, Any] = {k: _field_value(f) for k, f in reader.fields.items()
                                             if not k.startswith("GGUF.")}
            self.version = int(_field_value(reader.fields["GGUF.version"]))
        except Exception as exc:
            raise GGUFError(f"{self.path}: corrupt metadata ({type(exc).__name__}: {exc})") from None
        self.tensors: dict[str, TensorInfo] = {}
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            raw = np.asarray(t.data)
            self.tensors[t.name] = TensorInfo(
                name=t.name, ggml_type=int(t.tensor_type), type_name=t.tensor_type.name,
                shape=shape, data=raw.reshape(-1).view(np.uint8))

    # -- convenience ---------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def alignment(self) -> int:
        return int(self.metadata.get("general.alignment", 32))

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(f"{self.path}: no tensor {name!r} ({len(self.tensors)} tensors, "
                            f"e.g. {', '.join(list(self.tensors)[:3])})") from None

    def qtensor(self, name: str):
        """The tensor as a :class:`~quantlab.QTensor` viewing the file's bytes."""
        from ..formats.ggml import by_type
        info = self._info(name)
        return by_type(info.ggml_type).from_bytes(info.data, info.shape)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor decoded to float32 through quantlab's format classes."""
        return self.qtensor(name).dequantize()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.tensors)} tensors)"
