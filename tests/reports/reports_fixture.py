"""A realistic results.json for report tests and the report benchmark.

The numbers are made up but consistent in shape with what ``audit/`` writes:
clean + night@1..5 + glare@1..5 + blur@1,3,5 + occlusion@1..3 +
pgd@{0.001, 0.004, 0.016} = 20 conditions, three attributes with 10 groups in
all, a 5-class confusion matrix, 15 reliability bins per condition.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib

from audit.contract.groupstats import fairness_summary
from audit.contract.results import SCHEMA_VERSION

CLASSES = ["melanoma", "nevus", "basal cell carcinoma", "keratosis", "dermatofibroma"]
ATTRIBUTES = {
    "skin_tone": ["I-II", "III-IV", "V-VI"],
    "camera": ["phone", "dermatoscope", "webcam"],
    "site": ["Clinic A", "Clinic B", "Clinic C", "Clinic D"],
}
STRESSORS = [("night", [1, 2, 3, 4, 5]), ("glare", [1, 2, 3, 4, 5]), ("blur", [1, 3, 5]), ("occlusion", [1, 2, 3])]
EPSILONS = [0.001, 0.004, 0.016]
MIN_GROUP_SIZE = 50


def _png(width: int = 16, height: int = 12, seed: int = 0) -> str:
    """A tiny valid RGB PNG as a data URI (no Pillow needed)."""
    rng = random.Random(seed)
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(width * 3)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _metrics(rng: random.Random, acc: float, n: int) -> dict:
    half = 1.96 * (acc * (1 - acc) / max(n, 1)) ** 0.5
    ece = round(abs(rng.gauss(0.03 + (0.9 - acc) * 0.3, 0.01)), 4)
    return {
        "n": n,
        "accuracy": round(acc, 4),
        "accuracy_ci": [round(max(acc - half, 0), 4), round(min(acc + half, 1), 4)],
        "ece": ece,
        "mce": round(min(ece * 3, 1), 4),
        "brier": round(1.3 * (1 - acc) + 0.05, 4),
        "nll": round(2.2 * (1 - acc) + 0.1, 4),
        "macro_f1": round(acc - 0.03, 4),
        "balanced_accuracy": round(acc - 0.02, 4),
        "adaptive_ece": round(ece * 1.1, 4),
        "top_k_accuracy": None,
        "ece_ci": [round(max(ece - 0.01, 0), 4), round(min(ece + 0.01, 1), 4)],
    }


def _group_confusion(rng: random.Random, acc: float, n: int) -> list[list[int]]:
    """A K x K confusion matrix of n samples with about ``acc`` on the diagonal."""
    k = len(CLASSES)
    rows = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out = []
    for i, row_n in enumerate(rows):
        correct = min(row_n, round(row_n * acc))
        wrong = [0] * k
        for _ in range(row_n - correct):
            j = rng.randrange(k - 1)
            wrong[j if j < i else j + 1] += 1
        wrong[i] = correct
        out.append(wrong)
    return out


def _condition(rng: random.Random, cid: str, stressor, severity, acc: float) -> dict:
    k, n = len(CLASSES), 2000
    confusion = []
    for i in range(k):
        row_n = n // k
        correct = int(row_n * min(max(acc + rng.uniform(-0.05, 0.05), 0), 1))
        rest = [rng.random() for _ in range(k - 1)]
        others = [int((row_n - correct) * r / sum(rest)) for r in rest]
        row = others[:i] + [correct] + others[i:]
        row[i] += row_n - sum(row)
        confusion.append(row)
    groups = []
    for attribute, values in ATTRIBUTES.items():
        for j, value in enumerate(values):
            gn = 40 if value == "Clinic D" else n // len(values)
            gacc = min(max(acc - 0.04 * j + rng.uniform(-0.02, 0.02), 0.05), 0.99)
            confusion_g = _group_confusion(rng, gacc, gn)
            gacc = sum(confusion_g[i][i] for i in range(len(CLASSES))) / gn
            groups.append(
                {
                    "attribute": attribute,
                    "value": value,
                    "metrics": {**_metrics(rng, gacc, gn), "accuracy": gacc, "confusion": confusion_g},
                    "insufficient_data": gn < MIN_GROUP_SIZE,
                }
            )
    bins = []
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        conf = (lo + hi) / 2
        count = 0 if b < 3 else int(n * (b + 1) / 120)
        bins.append(
            {
                "lo": round(lo, 4),
                "hi": round(hi, 4),
                "n": count,
                "accuracy": round(min(max(conf - (0.9 - acc) * 0.4 + rng.uniform(-0.03, 0.03), 0), 1), 4),
                "confidence": round(conf, 4),
            }
        )
    return {
        "id": cid,
        "stressor": stressor,
        "severity": severity,
        "model_aware": stressor == "pgd",
        "metrics": _metrics(rng, acc, n),
        "confusion": confusion,
        "groups": groups,
        "reliability": {"bins": bins},
        "error_types": {
            "per_class_fnr": {c: round(1 - acc + rng.uniform(-0.05, 0.05), 3) for c in CLASSES},
            "per_class_fpr": {c: round((1 - acc) / 4, 3) for c in CLASSES},
            "top_confusions": [
                {"true": CLASSES[0], "predicted": CLASSES[1], "count": confusion[0][1]},
                {"true": CLASSES[3], "predicted": CLASSES[2], "count": confusion[3][2]},
            ],
            "overconfident_errors": int(n * (1 - acc) * 0.2),
        },
    }


# What each fixture rule judges (the report shows observed values and thresholds in the metric's unit).
_RULE_METRICS = {
    "clean_accuracy": {"metric": "accuracy"},
    "worst_group_gap": {"metric": "accuracy", "aggregate": "gap"},
    "ece_max": {"metric": "ece"},
    "min_group_size": {"metric": "n"},
}


def _rule(rule_id, status, blocking, observed, threshold, op, message, condition) -> dict:
    return {
        **_RULE_METRICS.get(rule_id, {}),
        "id": rule_id,
        "kind": "metric",
        "status": status,
        "blocking": blocking,
        "observed": observed,
        "threshold": threshold,
        "op": op,
        "condition": condition,
        "group": None,
        "clause": None,
        "description": None,
        "message": message,
    }


def make_results(*, seed: int = 0, gallery: bool = True) -> dict:
    """Build the fixture results dict.

    Args:
        seed: Seed of the made-up numbers.
        gallery: Include two stressor gallery images (policy allows images).

    Returns:
        A results dict valid under the results.json schema (audit.contract.results).
    """
    rng = random.Random(seed)
    conditions = [_condition(rng, "clean", None, 0, 0.91)]
    for (name, severities), slope in zip(STRESSORS, (0.06, 0.035, 0.09, 0.05)):
        for s in severities:
            conditions.append(_condition(rng, f"{name}@{s}", name, s, 0.91 - slope * s - rng.uniform(0, 0.03)))
    for eps in EPSILONS:
        conditions.append(_condition(rng, f"pgd@{eps}", "pgd", eps, max(0.91 - 40 * eps, 0.08)))
    clean = conditions[0]["metrics"]["accuracy"]
    fairness, disparity = [], []
    for c in conditions:
        for attribute in ATTRIBUTES:
            gs = [g for g in c["groups"] if g["attribute"] == attribute and not g["insufficient_data"]]
            members = [{"value": g["value"], **g["metrics"]} for g in c["groups"] if g["attribute"] == attribute]
            fairness.append(
                {
                    "condition": c["id"],
                    "attribute": attribute,
                    **fairness_summary(members, min_group_size=MIN_GROUP_SIZE),
                }
            )
            if c["stressor"]:
                drops = {g["value"]: round(rng.uniform(0.05, 0.3), 4) for g in gs}
                loser = max(drops, key=drops.get)
                disparity.append(
                    {
                        "condition": c["id"],
                        "stressor": c["stressor"],
                        "severity": c["severity"],
                        "attribute": attribute,
                        "worst_group": loser,
                        "drops": drops,
                        "disparity": round(max(drops.values()) - min(drops.values()), 4),
                        "excluded": [],
                    }
                )
    counts = {a: {v: 2000 // len(vs) for v in vs} for a, vs in ATTRIBUTES.items()}
    results = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "cvaudit", "version": "0.1.0"},
        "seed": 0,
        "model": {
            "path": "models/derm-resnet50.pt",
            "sha256": "ab" * 32,
            "format": "torchscript",
            "num_classes": len(CLASSES),
            "class_names": CLASSES,
        },
        "dataset": {
            "path": "data/manifest.csv",
            "sha256": "cd" * 32,
            "num_samples": 2000,
            "num_skipped": 2,
            "attributes": counts,
            "intersections": [],
            "skipped": [
                {"sample": "img_0042.jpg", "reason": "cannot decode JPEG"},
                {"sample": "img_1337.png", "reason": "image is 1x1 pixels"},
            ],
        },
        "evaluation": {
            "min_group_size": MIN_GROUP_SIZE,
            "n_bootstrap": 200,
            "confidence_level": 0.95,
            "ece_bins": 15,
            "attack_samples": None,
            "top_k": None,
        },
        "conditions": conditions,
        "fairness": fairness,
        "robustness_summary": {
            "stressors": [],
            "mce": None,
            "relative_mce": None,
            "normalized_mce": None,
            "normalized_relative_mce": None,
        },
        "error_shift": [],
        "robustness": [
            {
                "condition": c["id"],
                "stressor": c["stressor"],
                "severity": c["severity"],
                "accuracy": c["metrics"]["accuracy"],
                "clean_accuracy": clean,
                "drop": round(clean - c["metrics"]["accuracy"], 4),
            }
            for c in conditions[1:]
        ],
        "robustness_disparity": disparity,
        "adversarial_checks": [
            {
                "check": "gradient_masking",
                "status": "pass",
                "attack": "pgd",
                "observed": 0.0,
                "message": "accuracy decreases monotonically with epsilon",
            },
            {
                "check": "unbounded_attack_success",
                "status": "warn",
                "attack": "pgd",
                "observed": 0.93,
                "message": "a large-epsilon attack reached 93% success; expected close to 100%",
            },
        ],
        "stressors": [
            {
                "name": n,
                "stressor": n,
                "model_aware": False,
                "description": f"{n} stressor",
                "severities": s,
                "options": {},
                "severity_meaning": {str(v): f"{n} level {v}" for v in s},
            }
            for n, s in STRESSORS
        ]
        + [
            {
                "name": "pgd",
                "stressor": "pgd",
                "model_aware": True,
                "description": "Projected gradient descent (L-inf).",
                "severities": EPSILONS,
                "options": {"steps": 20},
                "severity_meaning": {str(e): f"L-inf budget {e} ({e * 255:.1f}/255)" for e in EPSILONS},
            }
        ],
        "governance": {
            "findings": [
                {
                    "check": "retention_expired",
                    "status": "pass",
                    "blocking": True,
                    "count": 0,
                    "total": 2000,
                    "sample_ids": [],
                    "message": "2000 samples checked: none found",
                },
                {
                    "check": "region_not_allowed",
                    "status": "warn",
                    "blocking": False,
                    "count": 1,
                    "total": 2000,
                    "sample_ids": ["img_0007.jpg"],
                    "message": "1 of 2000 samples: storage/processing region missing or not allowed",
                },
                {
                    "check": "consent_missing",
                    "status": "fail",
                    "blocking": True,
                    "count": 12,
                    "total": 2000,
                    "sample_ids": ["img_0001.jpg", "img_0002.jpg"],
                    "message": "12 of 2000 samples: no consent recorded in 'consent'",
                },
            ]
        },
        "policy": {
            "name": "ci-gate",
            "version": 1,
            "sha256": "ef" * 32,
            "verdict": "fail",
            "on_insufficient_data": "warn",
            "counts": {"pass": 1, "fail": 1, "warn": 1, "insufficient_data": 1},
            "blocking_failures": ["worst_group_gap", "governance.consent_missing"],
            "rules": [
                _rule("clean_accuracy", "pass", True, clean, 0.85, "min", "clean accuracy 0.91 >= 0.85", "clean"),
                _rule(
                    "worst_group_gap", "fail", True, 0.11, 0.05, "max", "skin_tone gap 0.11 > 0.05 at clean", "clean"
                ),
                _rule("ece_max", "warn", False, 0.062, 0.05, "max", "ECE 0.062 > 0.05", "clean"),
                _rule(
                    "min_group_size",
                    "insufficient_data",
                    False,
                    40,
                    50,
                    "min",
                    "site=Clinic D has 40 samples < 50",
                    "clean",
                ),
            ],
        },
        "provenance": {
            "seed": 0,
            "config": "config.yaml",
            "config_sha256": "12" * 32,
            "device": "cpu",
            "world_size": 1,
            "versions": {"torch": "2.13.0", "cvaudit": "0.1.0", "python": "3.11.9"},
            "started": "2026-11-29T01:00:00Z",
            "finished": "2026-11-29T01:07:12Z",
        },
    }
    if gallery:
        results["gallery"] = [
            {"condition": "night@3", "image": _png(seed=1)},
            {"condition": "glare@5", "image": _png(seed=2)},
        ]
    return results
