#!/usr/bin/env python3
"""Reference values for src/eval/metrics.ts, computed independently with numpy.

Writes tests/fixtures/metrics-reference.json: seeded random score matrices (quantised so that many scores tie,
including -0.0 against 0.0) and targets (with labels and images that have no positive), and the expected
per-label AP, mAP (all labels, and labels with positives), and micro P/R/F1 at K = 3 and 5, for ZSL (unseen
labels only) and GZSL (all labels), plus ZSL restricted to images with an unseen positive.

Definitions (docs/method.md section 5): AP sorts images by descending score, ties by ascending image
index (numpy's stable argsort of the negated scores); strict top-K takes exactly K labels per image, ties by
ascending label index.

Run: /usr/bin/python3 tools/metrics_reference.py   (numpy only; the fixture is committed)
"""
import json
import os

import numpy as np


def average_precision(s, t):
    order = np.argsort(-s, kind="stable")
    hits = t[order]
    if hits.sum() == 0:
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(s) + 1)
    return float(precision_at[hits == 1].mean())


def top_k(S, T, cols, k):
    sub = S[:, cols]
    tsub = T[:, cols]
    kk = min(k, len(cols))
    idx = np.argsort(-sub, axis=1, kind="stable")[:, :kk]
    tp = int(np.take_along_axis(tsub, idx, axis=1).sum())
    p = tp / (S.shape[0] * kk) if S.shape[0] * kk > 0 else 0.0
    r = tp / int(tsub.sum()) if tsub.sum() > 0 else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"k": k, "precision": p, "recall": r, "f1": f1, "truePositives": tp}


def protocol(S, T, cols, ks=(3, 5)):
    aps = [average_precision(S[:, j], T[:, j]) for j in cols]
    pos = [int(T[:, j].sum()) for j in cols]
    with_pos = [a for a, n in zip(aps, pos) if n > 0]
    return {
        "mAP": float(np.mean(aps)) if aps else 0.0,
        "mAPWithPositives": float(np.sum(with_pos) / len(with_pos)) if with_pos else 0.0,
        "labels": len(cols),
        "labelsWithPositives": len(with_pos),
        "images": int(S.shape[0]),
        "topK": [top_k(S, T, cols, k) for k in ks],
    }


def make_case(name, rng, n, l, n_unseen, step, lo, hi, p_pos):
    S = np.round(rng.uniform(lo, hi, size=(n, l)) / step) * step  # many ties, some -0.0
    S = S.astype(np.float32)
    T = (rng.uniform(size=(n, l)) < p_pos).astype(np.uint8)
    T[:, 1] = 0  # a label without positives
    T[0, :] = 0  # an image without positives
    labels = [f"l{j:02d}" for j in range(l)]
    unseen_cols = list(range(l - n_unseen, l))
    seen_cols = list(range(l - n_unseen))
    rows_with_unseen = [i for i in range(n) if T[i, unseen_cols].sum() > 0]
    return {
        "name": name,
        "images": n,
        "labels": labels,
        "seen": [labels[j] for j in seen_cols],
        "unseen": [labels[j] for j in unseen_cols],
        # float32 values written with enough digits to round-trip exactly
        "scores": [float(x) for x in S.reshape(-1)],
        "targets": "".join(str(int(x)) for x in T.reshape(-1)),
        "expected": {
            "ap": [average_precision(S[:, j], T[:, j]) for j in range(l)],
            "positives": [int(T[:, j].sum()) for j in range(l)],
            "gzsl": protocol(S, T, seen_cols + unseen_cols),
            "zsl": protocol(S, T, unseen_cols),
            "zslImagesWithUnseen": protocol(S[rows_with_unseen], T[rows_with_unseen], unseen_cols),
        },
    }


def main():
    rng = np.random.default_rng(20240614)
    cases = [
        make_case("small", rng, n=12, l=7, n_unseen=3, step=0.25, lo=0.0, hi=1.0, p_pos=0.3),
        make_case("logits", rng, n=300, l=40, n_unseen=10, step=1 / 32, lo=-2.0, hi=2.0, p_pos=0.1),
        make_case("fewlabels", rng, n=50, l=4, n_unseen=2, step=0.5, lo=-1.0, hi=1.0, p_pos=0.4),
    ]
    out = {
        "generator": "tools/metrics_reference.py",
        "numpy": np.__version__,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "metrics-reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
