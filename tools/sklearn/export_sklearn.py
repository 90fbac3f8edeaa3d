#!/usr/bin/python3
"""Export a fitted scikit-learn RandomForestClassifier to a loadwatch model file.

Usage:
    export_sklearn.py MODEL.(joblib|pkl) --out model.json
        [--features power,energy] [--legacy | --no-legacy] [--feature-set NAME]

MODEL is a RandomForestClassifier saved with joblib.dump or pickle.dump (a
pickle runs code when loaded: export only models you trust). The output is
the JSON model format of loadwatch/internal/forest (docs/FOREST.md), kind
"sklearn-import", which `loadwatch model eval|predict` and the predict API
load like their own models.

Feature names come from the model (feature_names_in_, set when it was fitted
on a pandas DataFrame) or from --features, in the model's column order. The
model is marked legacy (raw [P, E] input of the original Flask service) when
its two features are power and energy, or when --legacy is given.

Exactness: scikit-learn casts X to float32 and sends a row left when
float64(x) <= threshold (a float64). For a float32 x that is the same as
x <= t32, where t32 is the largest float32 not above the threshold, so the
thresholds are written rounded down to float32. Leaf class counts are
normalised per tree exactly as DecisionTreeClassifier.predict_proba does,
and loadwatch sums them tree by tree in float64 like
RandomForestClassifier.predict_proba, so the predicted class is the same on
every row.

Needs numpy and scikit-learn (Debian: python3-sklearn). Standard library
otherwise.
"""

import argparse
import datetime
import hashlib
import json
import os
import pickle
import sys

FORMAT = "loadwatch-model"
FORMAT_VERSION = 1
LEGACY_NAMES = ({"power", "energy"}, {"p", "e"})


def fail(msg):
    print("export_sklearn: " + msg, file=sys.stderr)
    sys.exit(1)


def load_model(path):
    try:
        import joblib

        return joblib.load(path)
    except ImportError:
        pass
    except Exception as e:  # not a joblib file: try a plain pickle
        first = e
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except Exception:
            raise first
    with open(path, "rb") as fh:
        return pickle.load(fh)


def round_down_f32(np, t):
    """Largest float32 <= t (t a Python float / float64)."""
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf), dtype=np.float32)
    return float(t32)


def export_tree(np, est, n_classes):
    tree = est.tree_
    n = tree.node_count
    left = tree.children_left
    right = tree.children_right
    feature = tree.feature
    threshold = tree.threshold
    missing = getattr(tree, "missing_go_to_left", None)  # scikit-learn >= 1.3
    out = {
        "feature": [],
        "threshold": [],
        "left": [],
        "right": [],
        "missing_left": [],
        "value": [],
    }
    leaves = [i for i in range(n) if left[i] == -1]
    # Exactly DecisionTreeClassifier.predict_proba: the leaves' value rows,
    # divided by their sum (a sum of 0 would be left as 0 there: refuse).
    value = tree.value.take(np.asarray(leaves, dtype=np.intp), axis=0)
    proba = value.reshape(len(leaves), tree.value.shape[2])[:, :n_classes]
    normalizer = proba.sum(axis=1)[:, np.newaxis]
    if (normalizer == 0.0).any():
        fail("a leaf has no samples; cannot export")
    proba = proba / normalizer
    leaf_row = {node: k for k, node in enumerate(leaves)}
    for i in range(n):
        if left[i] == -1:
            if right[i] != -1:
                fail("tree node %d has one child" % i)
            out["feature"].append(-1)
            out["threshold"].append(0.0)
            out["left"].append(-1)
            out["right"].append(-1)
            out["missing_left"].append(0)
            out["value"].extend(float(p) for p in proba[leaf_row[i]])
        else:
            out["feature"].append(int(feature[i]))
            out["threshold"].append(round_down_f32(np, float(threshold[i])))
            out["left"].append(int(left[i]))
            out["right"].append(int(right[i]))
            out["missing_left"].append(int(missing[i]) if missing is not None else 0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="fitted RandomForestClassifier (joblib or pickle file)")
    ap.add_argument("--out", required=True, help="output model JSON ('-' for stdout)")
    ap.add_argument("--features", help="comma-separated feature names, in column order")
    lg = ap.add_mutually_exclusive_group()
    lg.add_argument("--legacy", dest="legacy", action="store_true", default=None,
                    help="mark as a legacy raw [P, E] model")
    lg.add_argument("--no-legacy", dest="legacy", action="store_false",
                    help="do not mark as legacy even if the features are power, energy")
    ap.add_argument("--feature-set", help="feature set name (default: legacy-pe for legacy models, else raw)")
    args = ap.parse_args(argv)

    try:
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as e:
        fail("needs numpy and scikit-learn (%s)" % e)

    try:
        model = load_model(args.model)
    except Exception as e:
        fail("cannot load %s: %s" % (args.model, e))
    if not isinstance(model, RandomForestClassifier):
        fail("%s holds a %s, not a RandomForestClassifier" % (args.model, type(model).__name__))
    if not hasattr(model, "estimators_"):
        fail("the model is not fitted")
    if getattr(model, "n_outputs_", 1) != 1:
        fail("multi-output forests are not supported")

    n_features = int(model.n_features_in_)
    names = getattr(model, "feature_names_in_", None)
    if args.features:
        feats = [s.strip() for s in args.features.split(",")]
        if names is not None and list(names) != feats:
            fail("--features %s differs from the model's own %s" % (feats, list(names)))
    elif names is not None:
        feats = [str(s) for s in names]
    else:
        fail("the model has no feature names (fitted on an array): give --features")
    if len(feats) != n_features:
        fail("%d feature names for a model of %d features" % (len(feats), n_features))

    classes = [str(c) for c in model.classes_]
    n_classes = len(classes)
    legacy = args.legacy
    if legacy is None:
        legacy = len(feats) == 2 and {f.lower() for f in feats} in LEGACY_NAMES
    feature_set = args.feature_set or ("legacy-pe" if legacy else "raw")

    trees = [export_tree(np, est, n_classes) for est in model.estimators_]
    imp = [float(v) for v in model.feature_importances_]
    if any(v != v for v in imp):
        imp = None

    max_features = getattr(model.estimators_[0], "max_features_", None)
    cw = model.class_weight if model.class_weight == "balanced" else ""
    with open(args.model, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(args.model), datetime.timezone.utc)

    def as_int(v, default=0):
        return int(v) if isinstance(v, (int, np.integer)) else default

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "sklearn-import",
        "legacy": bool(legacy),
        "feature_set": feature_set,
        "features": feats,
        "classes": classes,
        "data_hash": "",
        "trained_at": mtime.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "trees": len(model.estimators_),
            "max_depth": as_int(model.max_depth),
            "min_samples_leaf": as_int(model.min_samples_leaf, 1),
            "min_samples_split": as_int(model.min_samples_split, 2),
            "max_features": as_int(max_features),
            "bootstrap": bool(model.bootstrap),
            "class_weight": cw,
            "seed": as_int(model.random_state),
        },
        "sklearn": {
            "version": __import__("sklearn").__version__,
            "source_sha256": digest,
            "params": {k: repr(v) for k, v in sorted(model.get_params().items())},
        },
        "forest": {
            "n_features": n_features,
            "n_classes": n_classes,
            "trees": trees,
        },
    }
    if imp is not None:
        doc["forest"]["importances"] = imp
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
