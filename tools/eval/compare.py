#!/usr/bin/python3
"""Compare loadwatch's classifier with scikit-learn on the same time-blocked folds.

For each readings CSV given, this script
  1. runs `loadwatch model report --json --folds-out F` (loadwatch's own
     features and forest, time-blocked cross-validation), which also writes
     the fold of every row and the rows purged from each fold's training;
  2. trains scikit-learn's RandomForestClassifier(n_estimators=100) on the
     SAME folds with (a) the original design's features (power, and energy
     where the file has it) and (b) every instantaneous column the file has
     (voltage, current, power, frequency, pf; the cumulative energy counter
     is not instantaneous and is left out);
  3. prints one Markdown table row per dataset and method: mean accuracy and
     macro-F1 over the folds with their sample standard deviation.

Run it with Debian's own interpreter (python3-sklearn):
  /usr/bin/python3 tools/eval/compare.py --loadwatch ./loadwatch datasets/ompm.csv ...
Options after the files are passed on to `loadwatch model report`
(e.g. --cv 5 --scheme class-blocks). Nothing here is random except the
forests, whose seeds are fixed.
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score

INSTANT = ["voltage", "current", "power", "frequency", "pf"]


def read_readings(path):
    """Returns the header-indexed columns of a readings CSV as lists of str."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        r = csv.DictReader(f)
        rows = list(r)
    return rows


def read_folds(path, n):
    test = np.zeros(n, dtype=np.int64)
    excluded = [set() for _ in range(n)]
    lines = np.zeros(n, dtype=np.int64)
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for i, row in enumerate(r):
            lines[i] = int(row["line"])
            test[i] = int(row["fold"])
            if row["excluded"]:
                excluded[i] = {int(k) for k in row["excluded"].split(";")}
    return lines, test, excluded


def column_matrix(rows, cols):
    """Matrix of the named columns that every row has (an empty column is
    'not measured'; sklearn 1.2 forests cannot take NaN, so a column that is
    empty anywhere is dropped)."""
    used = [c for c in cols if all(row.get(c, "") != "" for row in rows)]
    x = np.array([[float(row[c]) for c in used] for row in rows], dtype=np.float32)
    return used, x


def sklearn_cv(x, y, test, excluded, k, seed):
    accs, f1s = [], []
    for fold in range(k):
        te = test == fold
        if not te.any():
            continue
        tr = np.array([test[i] != fold and fold not in excluded[i] for i in range(len(y))])
        clf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=-1)
        clf.fit(x[tr], y[tr])
        p = clf.predict(x[te])
        accs.append(accuracy_score(y[te], p))
        f1s.append(f1_score(y[te], p, average="macro"))
    return accs, f1s


def mean_std(v):
    m = sum(v) / len(v)
    s = math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loadwatch", default="./loadwatch", help="loadwatch binary")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds; every method runs once per seed (forests vary with the seed)")
    ap.add_argument("--json", help="also write all figures to this JSON file")
    ap.add_argument("data", nargs="+", help="readings CSV files (one dataset each)")
    args, passthrough = ap.parse_known_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    print("| dataset | method | features | accuracy | macro-F1 | accuracy per seed |")
    print("|---|---|---|---:|---:|---|")
    line = "| {} | {} | {} | {:.3f} ± {:.3f} | {:.3f} ± {:.3f} | {} |"

    def summary(per_seed):
        """Mean over seeds of the fold mean, ± the mean fold-to-fold
        standard deviation, and each seed's fold mean."""
        acc = [mean_std(s["accuracy"]) for s in per_seed]
        f1 = [mean_std(s["macro_f1"]) for s in per_seed]
        avg = lambda v: sum(v) / len(v)
        return (avg([m for m, _ in acc]), avg([d for _, d in acc]),
                avg([m for m, _ in f1]), avg([d for _, d in f1]),
                " ".join(f"{m:.3f}" for m, _ in acc))

    for path in args.data:
        name = os.path.splitext(os.path.basename(path))[0]
        rows = read_readings(path)
        y = np.array([row["label"] for row in rows])
        res = {"dataset": name, "rows": len(rows), "seeds": seeds, "loadwatch": [],
               "sklearn (a)": [], "sklearn (b)": []}
        folds = None
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                folds_path = os.path.join(tmp, "folds.csv")
                cmd = [args.loadwatch, "model", "report", "--data", path, "--json",
                       "--folds-out", folds_path, "--seed", str(seed)] + passthrough
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                lw = json.loads(out)
                folds = read_folds(folds_path, len(rows))
            res["loadwatch"].append({"seed": seed, "accuracy": [f["accuracy"] for f in lw["folds"]],
                                     "macro_f1": [f["macro_f1"] for f in lw["folds"]]})
        lines, test, excluded = folds
        if list(lines) != list(range(2, len(rows) + 2)):
            sys.exit(f"{path}: fold file does not follow the CSV's rows")
        k = lw["k"]
        res.update(scheme=lw["scheme"], k=k, purge=lw["purge"])
        print(line.format(name, "loadwatch", "lw1", *summary(res["loadwatch"])))
        for label, cols in (("sklearn (a)", ["power", "energy"]), ("sklearn (b)", INSTANT)):
            used, x = column_matrix(rows, cols)
            for seed in seeds:
                accs, f1s = sklearn_cv(x, y, test, excluded, k, seed)
                res[label].append({"seed": seed, "features": used, "accuracy": accs, "macro_f1": f1s})
            print(line.format(name, label, ", ".join(used), *summary(res[label])))
        sys.stdout.flush()
        results.append(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
