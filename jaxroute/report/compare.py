r"""One markdown table from several workdirs' report.json (e.g. the paper's protocols).

    python -m jaxroute.report.compare workdirs/paper_20_80 workdirs/paper_80_20 > results.md

Rows: every router and reference router of each workdir; columns: mean ± std over seeds
of peak score, cost at the best single model's quality (C*), cost ratio CR = C*/C_best
(mean over the seeds that reached it), seeds that reached it, nAUC, AIQ, RCI and the
strong model's call rate at the largest budget.
"""

from __future__ import annotations

import json
import pathlib
import sys

COLUMNS = (
    ("peak", "peak", 3),
    ("cost_at_best_single", "C* (USD)", 5),
    ("cost_ratio", "CR", 3),
    ("reached_best_single", "reached", None),
    ("nauc", "nAUC", 3),
    ("aiq", "AIQ", 3),
    ("rci", "RCI", 3),
    ("strong_call_rate_at_max_budget", "strong@max", 3),
)
REFERENCES = ("oracle", "best_single", "zero_router", "random", "cheapest")


def _cell(entry: dict, key: str, digits: int | None) -> str:
    v = entry.get(key)
    if v is None:
        return "—"
    if digits is None:
        return str(v)
    s = f"{v:.{digits}f}"
    std = entry.get(f"{key}_std")
    return f"{s} ± {std:.{digits}f}" if std is not None else s


def table(workdir: str | pathlib.Path) -> str:
    """Markdown table of one workdir's report.json."""
    path = pathlib.Path(workdir) / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run train or evaluate first)")
    rep = json.loads(path.read_text())
    ds = rep["dataset"]
    rows = [(name, e) for name, e in rep["routers"].items()]
    rows += [(f"*{n}*", rep["reference"][n]) for n in REFERENCES if n in rep["reference"]]
    head = "| router | " + " | ".join(t for _, t, _ in COLUMNS) + " |"
    lines = [
        f"**{pathlib.Path(workdir).name}**: {ds.get('split', '?')} split, "
        f"{ds.get('n_train', '?')} train / {ds.get('n_test', '?')} test prompts, seeds "
        f"{ds.get('seeds')}; best single {ds.get('best_single', {}).get('model')}.",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, e in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(e, k, d) for k, _, d in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print("\n\n".join(table(w) for w in argv[1:]))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
