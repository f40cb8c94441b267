#!/usr/bin/env python3
"""Checks Troupe's drift tests and outlier scores against scipy on the same rows.

Usage: drift_check.py CASE.json

CASE.json: {"reference": [[...], ...], "categorical": [j, ...],
            "windows": [{"rows": [[...]], "features": [{feature, test, statistic, p_value, psi}]}],
            "scored": {"rows": [[...]], "scores": [...]}}

KS: scipy.stats.ks_2samp (method "auto": exact at these sizes). Chi-square:
scipy.stats.chi2_contingency of the 2 x k table of category counts, correction=False.
PSI: numpy, by the definition in docs/monitoring.md. Mahalanobis:
scipy.spatial.distance.mahalanobis with the inverse of the reference covariance plus the
ridge (1e-3 x mean variance). Exits 1 on a difference over 1e-6 (relative, for scores).
"""

import json
import sys

import numpy as np
from scipy import stats
from scipy.spatial.distance import mahalanobis

TOL = 1e-6


def psi(ref, win, bins=10, floor=1e-4):
    r = np.sort(ref)
    edges = [r[min(i * len(r) // bins, len(r) - 1)] for i in range(1, bins)]
    def shares(s):
        idx = np.searchsorted(edges, s, side="left")
        c = np.bincount(idx, minlength=bins) / len(s)
        return np.maximum(c, floor)
    a, b = shares(ref), shares(win)
    return float(np.sum((b - a) * np.log(b / a)))


def main():
    case = json.load(open(sys.argv[1]))
    ref = np.array(case["reference"], dtype=np.float64)
    cat = set(case["categorical"])
    bad, worst, n = [], 0.0, 0
    for w, window in enumerate(case["windows"]):
        rows = np.array(window["rows"], dtype=np.float64)
        for f in window["features"]:
            j = f["feature"]
            a, b = ref[:, j], rows[:, j]
            if j in cat:
                values = sorted(set(a.tolist()) | set(b.tolist()))
                table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
                if len(values) < 2:
                    want = (0.0, 1.0)
                else:
                    chi = stats.chi2_contingency(table, correction=False)
                    want = (chi[0], chi[1])
                test = "chi2"
            else:
                ks = stats.ks_2samp(a, b)
                want = (float(ks.statistic), float(ks.pvalue))
                test = "ks"
            for name, got, exp in [("test", f["test"], test), ("statistic", f["statistic"], want[0]),
                                   ("p_value", f["p_value"], want[1]), ("psi", f["psi"], psi(a, b))]:
                if name == "test":
                    if got != exp:
                        bad.append(f"window {w} feature {j}: test {got}, expected {exp}")
                    continue
                d = abs(float(got) - float(exp))
                worst = max(worst, d)
                n += 1
                if d > TOL:
                    bad.append(f"window {w} feature {j} {name}: troupe {got} scipy {exp}")
    scored = case["scored"]
    d = ref.shape[1]
    cov = np.cov(ref, rowvar=False)
    ridge = max(1e-3 * np.trace(cov) / d, 1e-12)
    vi = np.linalg.inv(cov + ridge * np.eye(d))
    mu = ref.mean(axis=0)
    for row, got in zip(scored["rows"], scored["scores"]):
        exp = mahalanobis(np.array(row, dtype=np.float64), mu, vi)
        rel = abs(got - exp) / max(abs(exp), 1e-12)
        worst = max(worst, rel)
        n += 1
        if rel > TOL:
            bad.append(f"outlier score: troupe {got} scipy {exp}")
    print(f"{n} figures compared; largest difference {worst:.3e}")
    for b in bad[:20]:
        print("MISMATCH", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
