#!/usr/bin/env python3
"""Writes testdata/normalize_cases.json: random strings mixing composed and
decomposed letters, combining marks in every order, Hangul, singletons and
composition exclusions, with their NFC and their full normalisation (NFC,
whitespace runs to one space, per-character lowercase) computed by Python's
unicodedata. Run from this directory: python3 gen_testdata.py."""
import json
import random
import re
import unicodedata

rng = random.Random(20260526)
pools = [
    "abcdeiouAEIOUnNcCsSzZ",
    "àáâãäåçèéêëìíîïñòóôõöùúûüýÿÀÉÎÕÜŠŽ",
    "".join(chr(c) for c in range(0x300, 0x370)),   # combining diacritics
    "\u0323\u0327\u0328\u031b\u0338\u0345\u05b0\u093c\u0e48\u3099\u309a",
    "\u1e9b\u1e63\u1e69\u1f00\u1f71\u1fbe\u0390\u03ab\u03d3\u2126\u212a\u212b\u00c5",
    "\u0958\u09dc\u0f43\u2adc\uf900\ufb1d\u0344\u0340\u0341\u0343\u0374\u037e\u0387",
    "".join(chr(c) for c in range(0x1100, 0x1113)) + "".join(chr(c) for c in range(0x1161, 0x1176)) + "".join(chr(c) for c in range(0x11a8, 0x11c3)),
    "\uac00\uac01\ud7a3\ud55c\uae00",
    "\u0130\u03a3\u0391\u0410\u0401\u1e9e\u00df\u0149\u01c5",
    "カか\u30ab\u3099\u304b\u3099ガ",
    "  \t\n\u3000\u00a0",
    "0123456789,.!'",
]
cases = []
for _ in range(600):
    n = rng.randint(1, 12)
    s = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
    nfc = unicodedata.normalize("NFC", s)
    norm = "".join(ch.lower() for ch in re.sub(r"[ \t\n\u3000\u00a0]+", " ", nfc))
    cases.append({"text": s, "nfc": nfc, "normalized": norm})
with open("testdata/normalize_cases.json", "w") as f:
    json.dump({"unicode_version": unicodedata.unidata_version, "cases": cases}, f, ensure_ascii=True, indent=0)
