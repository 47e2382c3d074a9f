"""How gold evidence stated as document ids is read: as ids (``evidence: auto``, the default) or
as text (``evidence: text``, what every bare string used to be).

HotpotQA dev questions are written out as a JSONL of one's own, the most common way public sets
state evidence: ``"evidence": [<gold paragraph id>, ...]`` with paragraph ids equal to their
titles. Each evidence entry is then counted as assigned to its own paragraph, to another
paragraph (a title found as words inside a distractor), or left out (found nowhere).

    python benchmarks/evidence_ids.py [--questions 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from ragkit.data.hotpotqa import HotpotQA
from ragkit.data.jsonl import JsonlDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("ragkit").setLevel(logging.ERROR)
    examples = HotpotQA(sample=args.questions, partition="eval").load().examples
    gold = {e.id: list(dict.fromkeys(ev.doc_id for ev in e.evidence)) for e in examples}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hotpot_ids.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for e in examples:
                documents = [{"id": d.id, "title": d.title, "text": d.text} for d in e.documents]
                record = {"id": e.id, "question": e.question, "answers": e.answers}
                handle.write(json.dumps({**record, "documents": documents, "evidence": gold[e.id]}) + "\n")
        total = sum(len(ids) for ids in gold.values())
        print(f"{len(examples)} questions, {total} evidence ids")
        print("| evidence: | to its own paragraph | to another paragraph | left out |")
        print("| --- | --- | --- | --- |")
        for mode in ("auto", "ids", "text"):
            loaded = JsonlDataset(path=str(path), evidence=mode, allow_missing_evidence=True).load()
            own = other = 0
            for e in loaded.examples:
                for ev in e.evidence:
                    source = ev.text if ev.text in gold[e.id] else ev.doc_id  # the id it was read from
                    own += ev.doc_id == source
                    other += ev.doc_id != source
            print(f"| {mode} | {own} | {other} | {total - own - other} |")


if __name__ == "__main__":
    main()
