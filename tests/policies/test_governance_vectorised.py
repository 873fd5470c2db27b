"""The vectorised governance checks give exactly what the row-by-row checks gave: findings and affected rows."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timezone

import numpy as np
import pytest
from governance_reference import reference_governance

from audit.contract.manifest import chunks_of_rows, read_manifest, read_manifest_chunks
from policies.governance import GovernanceScan, check_governance
from policies.schema import GovernanceConfig

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)

DATES = ["2024-06-01", "2019-01-01", "2030-01-01", "31/12/2023", "", "2024-13-01", "20240102", "2025-06-02T10:00Z"]
CONSENT = ["yes", "granted", "Withdrawn", "no", "", "maybe", "TRUE"]
PURPOSE = ["model evaluation", "", "marketing", "Model Evaluation"]
BASIS = ["consent", "contract", "", "whim"]
REGION = ["EU", "eu", "US", "", "EEA"]
FACE = ["true", "false", "TRUE", "yes", ""]
FREE = [
    "",
    "a note",
    "call +44 20 7946 0958",
    "mail jane.doe@example.org",
    "ssn 123-45-6789",
    "QQ 12 34 56 C",
    "AB123456C",
    "(555) 123-4567",
    "555.123.4567",
    "x555-123-4567",
    "v1.2-3",
    "7",
]


def _rows(n: int, seed: int, *, ragged: bool) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {
            "sample_id": rng.choice([f"s{i}", f"s{i}", "", f"user{i}@example.org"]),
            "path": f"img/{i}.png",
            "label": str(i % 3),
            "capture_date": rng.choice(DATES),
            "consent": rng.choice(CONSENT),
            "purpose": rng.choice(PURPOSE),
            "lawful_basis": rng.choice(BASIS),
            "region": rng.choice(REGION),
            "processing_region": rng.choice(REGION),
            "contains_face": rng.choice(FACE),
            "biometric_basis": rng.choice(["", "explicit consent"]),
            "patient_name": rng.choice(["", "", "A. Person"]),
            "notes": rng.choice(FREE),
        }
        if ragged:  # JSON rows may lack keys (the key order stays that of the first rows)
            for key in ("consent", "notes", "patient_name", "region", "path"):
                if rng.random() < 0.2:
                    del row[key]
        rows.append(row)
    return rows


CONFIGS = [
    {
        "retention": {"period_days": 365},
        "consent": {"blocking": True},
        "purpose": {"allowed": ["model evaluation"]},
        "lawful_basis": {},
        "pii": {},
        "biometric": {},
        "region": {"allowed": ["EU", "EEA"]},
    },
    {
        "max_ids": 2,
        "retention": {"period_days": 3650},
        "date_format": "day_first",
        "pii": {"columns": ["notes"], "scan_columns": ["notes", "sample_id"], "allow_columns": ["patient_name"]},
        "region": {"allowed": ["EU"], "columns": ["region", "processing_region"]},
        "biometric": {"true_values": ["yes"]},
    },
    {"pii": {"scan": False, "match_tokens": False, "columns": ["patient name"]}, "consent": {}},
]


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("rows_per_chunk", [1, 7, 1000])
def test_same_findings_and_affected_rows_as_row_by_row(config, ragged, rows_per_chunk):
    rows = _rows(300, seed=len(str(config)) + ragged, ragged=ragged)
    cfg = GovernanceConfig.model_validate(config)
    expected_affected: list = []
    expected = reference_governance(rows, config=cfg, now=NOW, affected=expected_affected)
    affected: list = []
    found = check_governance(
        chunks_of_rows(rows, rows_per_chunk=rows_per_chunk), config=cfg, now=NOW, affected=affected
    )
    assert found == expected
    assert affected == expected_affected
    assert any(f["count"] for f in found)  # the data really trips the checks


def test_rows_and_chunks_and_csv_agree(tmp_path):
    rows = _rows(200, seed=3, ragged=False)
    path = tmp_path / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = GovernanceConfig.model_validate(CONFIGS[0])
    expected = reference_governance(read_manifest(path), config=cfg, now=NOW)
    scan = GovernanceScan(cfg, now=NOW)
    for chunk in read_manifest_chunks(path, rows_per_chunk=16):
        scan.feed(chunk)
    assert scan.findings() == expected
    assert check_governance(rows, config=cfg, now=NOW) == expected


def test_chunk_reader_reads_what_the_row_reader_reads(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('\ufeffa, b\n1,"x\ny"\n\n2,z\n3,\n', encoding="utf-8")
    chunks = list(read_manifest_chunks(path, rows_per_chunk=2))
    assert [c.start for c in chunks] == [0, *np.cumsum([len(c) for c in chunks])[:-1].tolist()]
    assert len(chunks) == 2
    rows = list(read_manifest(path))
    assert [line for c in chunks for line in c.lines] == [r.line for r in rows]
    for column in ("a", "b"):
        assert [v for c in chunks for v in c.columns[column]] == [r[column] for r in rows]
