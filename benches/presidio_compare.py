#!/usr/bin/env python3
"""skillgate's detectors side by side with Microsoft Presidio's pattern recognizers.

Same corpus, same run: speed ratio and precision/recall per entity type.

    python3 -m venv benches/.venv-presidio
    benches/.venv-presidio/bin/pip install -r benches/presidio_requirements.txt
    cargo build --release --example redaction_corpus
    benches/.venv-presidio/bin/python benches/presidio_compare.py

Presidio runs offline: a blank spaCy English pipeline (no model download), so
only its pattern and rule recognizers (credit card, SSN, e-mail, phone via the
`phonenumbers` library, IBAN, IP) take part, with context words. Not a CI
test: a benchmark, results in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / "release/examples/redaction_corpus"
CORPUS = TARGET / "redaction-corpus.jsonl"
TYPES = ["CREDIT_CARD", "US_SSN", "EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "IP_ADDRESS"]


def presidio_engine():
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
    engine.nlp = {"en": spacy.blank("en")}  # offline: no model download
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def score(docs, found):
    per = {}
    for doc, spans in zip(docs, found):
        labels = [(l["start"], l["end"], l["type"]) for l in doc["labels"]]
        for s, e, t in spans:
            hit = any(lt == t and s < le and ls < e for ls, le, lt in labels)
            per.setdefault(t, {"tp": 0, "fp": 0, "fn": 0})["tp" if hit else "fp"] += 1
        for ls, le, lt in labels:
            if not any(t == lt and s < le and ls < e for s, e, t in spans):
                per.setdefault(lt, {"tp": 0, "fp": 0, "fn": 0})["fn"] += 1
    return per


def pr(c):
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
    return p, r


def main() -> None:
    if not BIN.exists():
        sys.exit(f"{BIN} missing: cargo build --release --example redaction_corpus")
    subprocess.run([BIN, CORPUS], check=True)
    docs = [json.loads(l) for l in CORPUS.read_text().splitlines()]
    ours = json.loads(subprocess.run([BIN, "score", CORPUS], check=True, capture_output=True, text=True).stdout)

    analyzer = presidio_engine()
    analyzer.analyze(text="warm up 4111 1111 1111 1111", language="en", entities=TYPES)
    t0 = time.perf_counter()
    found = []
    for d in docs:
        res = analyzer.analyze(text=d["text"], language="en", entities=TYPES)
        found.append([(r.start, r.end, r.entity_type) for r in res])
    presidio_ms = (time.perf_counter() - t0) * 1e3
    theirs = score(docs, found)

    mb = ours["bytes"] / 1e6
    print(f"corpus: {len(docs)} documents, {mb:.2f} MB (generated, fake data)")
    print(f"skillgate: {ours['ms']:.1f} ms ({mb / (ours['ms'] / 1e3):.1f} MB/s) first pass, "
          f"{ours['warm_ms']:.1f} ms ({mb / (ours['warm_ms'] / 1e3):.1f} MB/s) warm, all entity types")
    print(f"presidio:  {presidio_ms:.1f} ms ({mb / (presidio_ms / 1e3):.2f} MB/s), {len(TYPES)} entity types")
    print(f"speed ratio: skillgate {presidio_ms / ours['ms']:.0f}x faster on the first pass, "
          f"{presidio_ms / ours['warm_ms']:.0f}x warm")
    print()
    print("| entity type | skillgate P | skillgate R | Presidio P | Presidio R |")
    print("|---|---|---|---|---|")
    for t in TYPES + sorted(set(ours["per_type"]) - set(TYPES)):
        sp, sr = pr(ours["per_type"].get(t, {"tp": 0, "fp": 0, "fn": 0}))
        if t in TYPES:
            pp, prr = pr(theirs.get(t, {"tp": 0, "fp": 0, "fn": 0}))
            print(f"| {t} | {sp:.3f} | {sr:.3f} | {pp:.3f} | {prr:.3f} |")
        else:
            print(f"| {t} | {sp:.3f} | {sr:.3f} | – | – |")


if __name__ == "__main__":
    main()
