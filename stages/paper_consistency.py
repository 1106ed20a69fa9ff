"""Stage ``paper_consistency``: how the paper's own tables agree, written to ``metrics/paper_consistency.json``.

    python -m stages.paper_consistency --out metrics/paper_consistency.json

Recomputes Table 3's COVID-Net CXR-S row from Table 4, solves every Table 3 row for whole counts
on the 150 test images, and checks the figures quoted in the text (:mod:`stages.reference.consistency`).
Needs no data: the report states the findings beside the tables they concern.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common.io import write_json
from stages.reference import paper
from stages.reference.consistency import check


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("metrics/paper_consistency.json"))
    args = parser.parse_args(argv)
    result = check(paper())
    write_json(args.out, result)
    for model, row in result["table3_rows"].items():
        print(f"paper_consistency: Table 3 {model}: level names {row['level_names']}, "
              f"{len(row['solutions'])} solution(s)")


if __name__ == "__main__":
    main()
