"""Our verifier against an outside witness on real outputs: every record of a generate or eval store scored by
seqdistill (lenient, as eval's accuracy) and by math-verify as lighteval's GSM8K metric runs it
(verify.witness_check). Prints the agreement and every disagreement with the text's tail, so each one can be
traced to a documented convention or a bug. Usage: python bench/witness_agreement.py STORE_DIR [--json OUT]"""

from __future__ import annotations

import argparse
import json

from seqdistill.records import answer_text
from seqdistill.store import Store
from seqdistill.verify import CORRECT, check_many, witness_many


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = list(Store(args.store).records())
    items = [(answer_text(r), r["gold"], r["task"]) for r in rows]
    ours = check_many(items, lenient=True)
    theirs = witness_many(items)
    differ = [(r, o, w) for r, o, w in zip(rows, ours, theirs) if (o.status == CORRECT) != (w == CORRECT)]
    out = {"store": args.store, "samples": len(rows), "ours_correct": sum(o.status == CORRECT for o in ours),
           "witness_correct": sum(w == CORRECT for w in theirs), "disagreements": len(differ),
           "agreement": 1 - len(differ) / max(len(rows), 1),
           "examples": [{"prompt_id": r["prompt_id"], "sample_index": r["sample_index"], "ours": o.status,
                         "ours_reason": o.reason, "ours_pred": o.pred, "witness": w,
                         "finish_reason": r["finish_reason"], "tail": answer_text(r)[-240:]}
                        for r, o, w in differ[:50]]}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
