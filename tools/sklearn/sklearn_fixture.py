#!/usr/bin/python3
"""Test fixture for internal/forest's scikit-learn import test (not a tool).

    sklearn_fixture.py DATA.csv COLUMNS OUTDIR PARAMS_JSON

Reads the named numeric columns and the label column of a readings CSV,
fits RandomForestClassifier(**PARAMS) on them, saves OUTDIR/model.joblib and
writes OUTDIR/predictions.txt: per row the predicted class and the
predict_proba row (repr floats), space separated.
"""

import csv
import json
import os
import sys

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier


def main():
    path, cols, outdir, params = sys.argv[1], sys.argv[2].split(","), sys.argv[3], json.loads(sys.argv[4])
    X, y = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            X.append([float(row[c]) if row[c] != "" else float("nan") for c in cols])
            y.append(row["label"])
    X = np.asarray(X, dtype=np.float64)
    model = RandomForestClassifier(**params).fit(X, y)
    joblib.dump(model, os.path.join(outdir, "model.joblib"))
    pred = model.predict(X)
    proba = model.predict_proba(X)
    with open(os.path.join(outdir, "predictions.txt"), "w") as fh:
        for c, p in zip(pred, proba):
            fh.write(" ".join([str(c)] + [repr(float(v)) for v in p]) + "\n")


if __name__ == "__main__":
    main()
