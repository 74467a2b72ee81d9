"""``quantlab quantize IN.gguf OUT.gguf TYPE``: llama-quantize in NumPy, tensor by tensor."""
from __future__ import annotations

from ..formats.ggml.mixes import ALIASES, FTYPES
from ..io.quantize_file import quantize_file
from .formats import print_table


def run(args) -> int:
    report = quantize_file(args.input, args.output, args.type, imatrix=args.imatrix,
                           pure=args.pure, output_tensor_type=args.output_tensor_type,
                           token_embedding_type=args.token_embedding_type,
                           allow_requantize=args.allow_requantize,
                           leave_output_tensor=args.leave_output_tensor, dry_run=args.dry_run,
                           progress=not args.quiet)
    if args.dry_run or args.verbose:
        print_table([{"name": r.name, "shape": "x".join(map(str, r.shape)), "in": r.type_in,
                      "out": r.type_out, "mib": r.bytes_out / 2**20,
                      "imatrix": "yes" if r.imatrix else ""} for r in report.records],
                    [("name", "tensor", ""), ("shape", "shape", ""), ("in", "from", ""),
                     ("out", "to", ""), ("mib", "MiB", ".3f"), ("imatrix", "imatrix", "")])
    print(report.summary())
    return 0


def add_parser(sub) -> None:
    types = ", ".join(list(FTYPES) + list(ALIASES))
    p = sub.add_parser(
        "quantize", help="quantize a GGUF model like llama-quantize (Q4_K_M, Q8_0, IQ4_XS, ...)",
        description="Quantize a GGUF model tensor by tensor with llama-quantize's per-tensor "
                    f"rules. TYPE is a llama.cpp file type ({types}) or, with --pure, a single "
                    "ggml block type (e.g. Q4_K, TQ1_0, MXFP4). The output is written atomically.")
    p.add_argument("input", help="input GGUF (F32/F16/BF16; quantized needs --allow-requantize, "
                                 "except TYPE F32 which decodes everything)")
    p.add_argument("output", help="output GGUF (must differ from the input)")
    p.add_argument("type", metavar="TYPE", help="llama.cpp file type, e.g. Q4_K_M")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (GGUF or legacy .dat)")
    p.add_argument("--pure", action="store_true",
                   help="no mix: every quantizable tensor gets TYPE's default type")
    p.add_argument("--output-tensor-type", metavar="T", help="ggml type for output.weight")
    p.add_argument("--token-embedding-type", metavar="T", help="ggml type for token_embd.weight")
    p.add_argument("--allow-requantize", action="store_true",
                   help="allow re-quantizing already quantized tensors")
    p.add_argument("--leave-output-tensor", action="store_true",
                   help="keep output.weight in its source type")
    p.add_argument("--dry-run", action="store_true",
                   help="print the chosen types and sizes; write nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-tensor table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
