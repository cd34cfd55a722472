#!/usr/bin/env python3
"""Peer run for the guardrails benchmark: Microsoft Presidio (presidio-analyzer) with spaCy `ja_ginza`.

Reads the labelled JSON-lines set, writes one JSON object with Presidio's predictions per record and its
timings (same 4 KB note construction and same measurement shape as `anshin-guardrails bench`). Offline:
tldextract's run-time download of the public-suffix list is disabled before Presidio imports it.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TLDEXTRACT_CACHE", os.path.expanduser("~/.cache/anshin/tldextract"))

import tldextract  # noqa: E402

_offline = tldextract.TLDExtract(suffix_list_urls=(), fallback_to_snapshot=True)
tldextract.extract = _offline  # Presidio's email/URL recognizers call tldextract.extract

from presidio_analyzer import AnalyzerEngine  # noqa: E402
from presidio_analyzer.nlp_engine import NlpEngineProvider  # noqa: E402

# Presidio's types mapped onto Anshin's (scoring ignores the type; this only labels the output).
TYPE_MAP = {
    "PERSON": "PERSON",
    "LOCATION": "ADDRESS",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "DATE_TIME": "BIRTH_DATE",
}


def build_note(texts, limit=4096):
    """The 4 KB clinical note: dev records joined by newlines while the UTF-8 size stays <= limit."""
    note = ""
    for t in texts:
        cand = t if not note else note + "\n" + t
        if len(cand.encode("utf-8")) > limit:
            break
        note = cand
    return note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--latency-runs", type=int, default=20)
    args = ap.parse_args()
    records = [json.loads(l) for l in open(args.data, encoding="utf-8") if l.strip()]
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "ja", "model_name": "ja_ginza"}],
        # GiNZA tags Extended Named Entity labels (Person, Postal_Address, ...), not Presidio's
        # OntoNotes defaults: map them, or Presidio reports no name or address at all.
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": {
                "Person": "PERSON", "PERSON": "PERSON",
                "Postal_Address": "LOCATION", "Address_Other": "LOCATION", "Province": "LOCATION",
                "City": "LOCATION", "County": "LOCATION", "GPE": "LOCATION", "LOC": "LOCATION",
                "Phone_Number": "PHONE_NUMBER", "Email": "EMAIL_ADDRESS",
                "Date": "DATE_TIME", "DATE": "DATE_TIME",
            },
            "low_confidence_score_multiplier": 0.4,
            "low_score_entity_names": [],
            "labels_to_ignore": [],
        },
    })
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["ja"])
    engine.analyze(text="ウォームアップ 山田太郎", language="ja")

    preds = []
    nbytes = 0
    t0 = time.perf_counter()
    for r in records:
        res = engine.analyze(text=r["text"], language="ja")
        nbytes += len(r["text"].encode("utf-8"))
        ents = [{"type": TYPE_MAP.get(x.entity_type, "PATIENT_ID"), "start": x.start, "end": x.end,
                 "text": r["text"][x.start:x.end], "peer_type": x.entity_type} for x in res]
        preds.append({"id": r["id"], "entities": ents})
    elapsed = time.perf_counter() - t0

    note = build_note([r["text"] for r in records])
    lat = []
    for _ in range(args.latency_runs):
        s = time.perf_counter()
        engine.analyze(text=note, language="ja")
        lat.append((time.perf_counter() - s) * 1000.0)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    out = {
        "peer": "presidio-analyzer + ja_ginza",
        "predictions": preds,
        "throughput_mb_per_s_per_core": nbytes / elapsed / 1e6,
        "note_bytes": len(note.encode("utf-8")),
        "latency_runs": len(lat),
        "note_p50_ms": statistics.median(lat),
        "note_p99_ms": p99,
        "threads": "default (spaCy/thinc may use more than one core)",
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"presidio peer: {len(records)} records in {elapsed:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
