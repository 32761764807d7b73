"""Agreement of seqdistill's verifier and of math-verify alone with the expected verdicts of the
answer-equivalence corpus (tests/data/verifier_cases.jsonl), per category, side by side in one run.

    python bench/verifier_agreement.py [--show-disagreements]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from verifier_corpus import load_cases, score, table  # noqa: E402

if __name__ == "__main__":
    result = score(load_cases())
    print(table(result))
    if "--show-disagreements" in sys.argv:
        for case, got in result["disagreements"]:
            print(f"ours={got} expected={case['expected']} task={case['task']} gold={case['gold']!r} "
                  f"output=...{case['output'][-60:]!r}")
