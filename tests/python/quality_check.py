#!/usr/bin/env python3
"""Checks Troupe's live quality metrics against scikit-learn's on the same pairs.

Usage: quality_check.py PAIRS.json REPORT.json

PAIRS.json: {"classes": N, "predicted": [...], "truth": [...], "scores": [[...], ...]}
  (class indices; scores: each labelled call's class scores as Troupe stored them)
REPORT.json: one window of `troupe.v1.Monitor/Quality` as JSON (accuracy, roc_auc, ece,
  classes: [{class, precision, recall, f1, support}]).

Prints the largest difference and exits 1 when any figure differs by more than 1e-6.
ECE has no scikit-learn function: it is computed here with numpy, by the definition in
docs/monitoring.md (10 equal bins of the top-class score, (lo, hi]).
"""

import json
import sys

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

TOL = 1e-6


def ece(scores, predicted, truth, bins=10):
    conf = scores.max(axis=1)
    right = (predicted == truth).astype(float)
    idx = np.clip(np.ceil(conf * bins), 1, bins).astype(int) - 1
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return total


def main():
    pairs = json.load(open(sys.argv[1]))
    report = json.load(open(sys.argv[2]))
    y_pred = np.array(pairs["predicted"])
    y_true = np.array(pairs["truth"])
    scores = np.array(pairs["scores"], dtype=np.float64)
    n_classes = pairs["classes"]

    want = {"accuracy": accuracy_score(y_true, y_pred)}
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, c in enumerate(labels):
        want[f"precision[{c}]"] = p[i]
        want[f"recall[{c}]"] = r[i]
        want[f"f1[{c}]"] = f[i]
        want[f"support[{c}]"] = s[i]
    if n_classes == 2:
        want["roc_auc"] = roc_auc_score(y_true, scores[:, 1])
    elif len(set(y_true.tolist())) == n_classes:
        want["roc_auc"] = roc_auc_score(y_true, scores, multi_class="ovr", average="macro")
    want["ece"] = ece(scores, y_pred, y_true)

    got = {"accuracy": report.get("accuracy"), "roc_auc": report.get("roc_auc"), "ece": report.get("ece")}
    for c in report.get("classes", []):
        k = c["class"]
        got[f"precision[{k}]"] = c.get("precision", 0.0)
        got[f"recall[{k}]"] = c.get("recall", 0.0)
        got[f"f1[{k}]"] = c.get("f1", 0.0)
        got[f"support[{k}]"] = c.get("support", 0)

    worst = 0.0
    bad = []
    for k, v in want.items():
        g = got.get(k)
        if g is None:
            bad.append(f"{k}: missing (scikit-learn {v})")
            continue
        d = abs(float(g) - float(v))
        worst = max(worst, d)
        if d > TOL:
            bad.append(f"{k}: troupe {g} scikit-learn {v}")
    print(f"{len(want)} figures compared on {len(y_true)} labelled calls; largest difference {worst:.3e}")
    for b in bad:
        print("MISMATCH", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
