"""``quantlab formats``: the table of every registered format, or one format's description."""
from __future__ import annotations

from ..formats import describe, formats, get


def rows() -> list[dict]:
    """The table as plain records (tests check these, the CLI prints them)."""
    out = []
    for name in formats():
        f = get(name)
        out.append({"name": name, "family": f.family, "bits_per_weight": f.bits_per_weight(),
                    "block_size": f.block_size, "exact_against": f.oracle or "-",
                    "description": f.summary})
    return out


def print_table(records: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print records as an aligned text table; ``columns`` = (key, header, format spec)."""
    cells = [[format(r[k], spec) for k, _, spec in columns] for r in records]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (_, h, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


def run(args) -> int:
    if args.describe:
        print(describe(args.describe))
        return 0
    print_table(rows(), [("name", "name", ""), ("family", "family", ""),
                         ("bits_per_weight", "bits/weight", ".4g"), ("block_size", "block", "d"),
                         ("exact_against", "exact against", ""), ("description", "description", "")])
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("formats", help="list every format (name, bits/weight, block, oracle)",
                       description="Print a table of every registered format, or describe one.")
    p.add_argument("--describe", metavar="NAME", help="print the full description of one format")
    p.set_defaults(func=run)
