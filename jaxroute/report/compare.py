r"""One markdown table per workdir from their report.json (e.g. the paper's protocols).

    python -m jaxroute.report.compare workdirs/paper_20_80 workdirs/paper_80_20 > results.md

Each workdir gets a line (split, train / test sizes, seeds, best single model) and the
report's own headline table (:func:`jaxroute.report.headline_table`: every router and
reference router, the key metrics under the budget rule and the λ rule side by side,
mean ± std over seeds).
"""

from __future__ import annotations

import json
import pathlib
import sys

from jaxroute.report.report import headline_table


def table(workdir: str | pathlib.Path) -> str:
    """Markdown block of one workdir's report.json."""
    path = pathlib.Path(workdir) / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run train or evaluate first)")
    rep = json.loads(path.read_text())
    ds = rep["dataset"]
    head = (
        f"**{pathlib.Path(workdir).name}**: {ds.get('split', '?')} split, "
        f"{ds.get('n_train', '?')} train / {ds.get('n_test', '?')} test prompts, seeds "
        f"{ds.get('seeds')}; best single {ds.get('best_single', {}).get('model')}."
    )
    return f"{head}\n\n{headline_table(rep)}"


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
