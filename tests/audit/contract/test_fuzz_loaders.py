"""Property-based fuzzing of the text loaders: config, policy, manifest, results.json.

Every input to :func:`load_config`, :func:`parse_policy` / :func:`load_policy`, the manifest
readers (CSV, TSV, JSONL, JSON) and :func:`load_results` / :func:`parse_results` either loads or
raises cvaudit's own error type (:class:`CvauditError`: one line, at most ``MAX_MESSAGE``
characters), within a CPU-time and a memory bound (:func:`fuzz_kit.check`); any other exception is
a bug and fails the test. Inputs are random bytes, random documents built from each format's own
vocabulary, valid files with values substituted or bytes mutated, and the hostile shapes of
:mod:`fuzz_kit` (lone surrogates raw and escaped, control characters, formula starts, huge
integers, deep nesting, NUL bytes, very long lines, BOMs, duplicate keys, alias bombs).

``CVAUDIT_FUZZ=smoke|ci|long`` picks the number of examples (``ci`` by default; ``make fuzz``
runs ``long``). The detection annotations, trust files, key folders and Hugging Face configs are
fuzzed in the other ``test_fuzz_*`` modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fuzz_kit import (
    HOSTILE_TEXT,
    check,
    check_message,
    documents,
    duplicate_keys,
    fuzz_settings,
    inputs,
)
from hypothesis import given
from hypothesis import strategies as st
from results_builder import complete_results

from audit.contract.config import load_config
from audit.contract.errors import CvauditError
from audit.contract.load import load_results, parse_results
from audit.contract.manifest import read_manifest_chunks, read_manifest_rows
from policies.loader import load_policy, parse_policy

CONFIG_KEYS = {
    None: ["seed", "device", "batch_size", "model", "data", "stressors", "policy", "report", "evaluation"],
    "model": ["path", "factory", "weights", "outputs", "input_size", "mean", "std", "channels", "class_names"],
    "data": [
        "manifest",
        "images",
        "npz",
        "attributes",
        "intersections",
        "on_bad_image",
        "id_column",
        "num_workers",
        "root",
        "allow_outside_root",
        "max_image_pixels",
    ],
    "report": ["formats", "images", "sign_key"],
    "evaluation": ["n_bootstrap", "min_group_size", "top_k", "attack_samples"],
}
POLICY_KEYS = [
    "version",
    "name",
    "description",
    "on_insufficient_data",
    "rules",
    "governance",
    "report",
    "id",
    "condition",
    "metric",
    "judge",
    "min",
    "max",
    "min_samples",
    "attribute",
    "aggregate",
    "value",
    "blocking",
    "clause",
    "section",
    "entry",
    "kind",
    "check",
    "stressor",
    "severity",
    "required",
    "retention",
    "period_days",
    "consent",
    "pii",
    "region",
    "allowed",
    "date_format",
    "images",
]
RESULT_KEYS = ["schema_version", "model", "dataset", "conditions", "policy", "metrics", "groups", "id", "n", "accuracy"]
VALID_CONFIG = (
    b"seed: 0\nmodel:\n  path: model.pt\n  class_names: [a, b]\ndata:\n  manifest: m.csv\n  attributes: [camera]\n"
    b"  root: .\nstressors:\n  - {name: night, severities: [1, 2]}\npolicy: ci-gate\nreport: {formats: [html]}\n"
)
VALID_POLICY = (
    b"version: 1\nname: p\nrules:\n  - {id: a, condition: clean, metric: accuracy, min: 0.9}\n"
    b"  - {id: b, condition: 'night@*', attribute: camera, aggregate: gap, metric: accuracy, max: 0.1}\n"
    b"governance:\n  retention: {period_days: 30}\n"
)
VALID_MANIFEST = b"path,label,camera\na.png,0,A\nb.png,1,B\n"


CONFIG_VOCABULARY = [k for keys in CONFIG_KEYS.values() for k in keys]
MANIFEST_VOCABULARY = ["path", "label", "camera", "sample_id"]
VALID_MANIFEST_JSONL = b'{"path": "a.png", "label": 0, "camera": "A"}\n{"path": "b.png", "label": 1, "camera": "B"}\n'


def _valid_results() -> bytes:
    return json.dumps(complete_results({})).encode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz_settings(1.0)
@given(data=inputs(CONFIG_VOCABULARY, VALID_CONFIG, yaml.safe_load(VALID_CONFIG)))
def test_config_loader(folder, data):
    path = folder / "config.yaml"
    path.write_bytes(data)
    check(lambda: load_config(path))


@fuzz_settings(1.0)
@given(data=inputs(POLICY_KEYS, VALID_POLICY, yaml.safe_load(VALID_POLICY)))
def test_policy_loader(folder, data):
    check(lambda: parse_policy(data, source="policy.yaml"))
    path = folder / "policy.yaml"
    path.write_bytes(data)
    check(lambda: load_policy(path))


# A name too long for the system was an OSError (found by test_policy_names); now one PolicyError line.
KNOWN_POLICY_NAMES: list = []


@fuzz_settings(0.1)
@given(name=st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=30)), suffix=st.sampled_from(["", ".yaml"]))
def test_policy_names(name, suffix):
    """``load_policy`` takes a built-in name or a path: any string is a name or a path or one error."""
    check(lambda: load_policy(name + suffix), known=KNOWN_POLICY_NAMES)


def _assert_text_encodes(rows) -> None:
    """Every key and text value of the rows encodes as UTF-8 (issue 31, point 4)."""
    for row in rows:
        for key, value in row.items():
            str(key).encode("utf-8")
            if isinstance(value, str):
                value.encode("utf-8")


@fuzz_settings(1.0)
@given(
    data=st.one_of(
        inputs(MANIFEST_VOCABULARY, VALID_MANIFEST),
        inputs(MANIFEST_VOCABULARY, VALID_MANIFEST_JSONL),
        st.lists(documents(["path", "label", "camera"]), max_size=4).map(
            lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
        ),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".ndjson", ".json"]),
)
def test_manifest_reader(folder, data, suffix):
    path = folder / f"manifest{suffix}"
    path.write_bytes(data)
    rows = check(lambda: read_manifest_rows(path))
    _assert_text_encodes(rows or [])
    check(lambda: [len(chunk) for chunk in read_manifest_chunks(path, rows_per_chunk=2)])


@fuzz_settings(1.0)
@given(
    data=st.one_of(
        inputs(RESULT_KEYS, _valid_results(), json.loads(_valid_results())),
        duplicate_keys(_valid_results()),
    )
)
def test_load_results(folder, data):
    path = folder / "results.json"
    path.write_bytes(data)
    check(lambda: load_results(path))
    check(lambda: parse_results(data, source="results.json"))


@fuzz_settings(1.0)
@given(document=documents(RESULT_KEYS))
def test_parse_results_of_parsed_documents(document):
    check(lambda: parse_results(document, source="results"))


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b"1" * 10_000,
        b'{"schema_version": "1.1", "conditions": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_results_regressions_found_by_fuzzing(data):
    check(lambda: parse_results(data, source="results.json"))


@pytest.mark.parametrize(
    ("suffix", "data"),
    [(".json", b"[" * 100_000), (".jsonl", b"1" * 10_000 + b"\n"), (".jsonl", b'{"a": ' + b"[" * 5000 + b"}\n")],
)
def test_manifest_regressions_found_by_fuzzing(tmp_path, suffix, data):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(data)
    check(lambda: read_manifest_rows(path))


@pytest.mark.parametrize(
    "text",
    [
        "model: {path: ~nobody-here/m.pt}\ndata: {manifest: m.csv}\n",
        'model: {path: "a\\0b"}\ndata: {manifest: m.csv}\n',
        "model: {path: m.pt}\ndata: {manifest: m.csv, root: ~nobody-here/}\n",
        "seed: " + "1" * 4301 + "\n",
        "[" * 400 + "]" * 400,
        "{a: " * 400 + "1" + "}" * 400,
        "a: \x00\n",
    ],
)
def test_config_regressions_found_by_fuzzing(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    check(lambda: load_config(path))


def test_time_bound_is_the_reading_threads_cpu_time(monkeypatch):
    """Issue 31, point 8: the bound must not trip on a loaded machine, only on a reader's own work.

    A reader that waits (wall-clock time passes, as when other processes or threads hold the CPU)
    passes a tiny budget; one that computes past it fails.
    """
    import threading
    import time

    import fuzz_kit

    monkeypatch.setattr(fuzz_kit, "CPU_SECONDS", 0.2)
    stop = threading.Event()

    def burn():  # another thread's CPU time (allocating nothing: tracemalloc sees every thread)
        while not stop.is_set():
            pass

    busy = threading.Thread(target=burn)
    busy.start()
    try:
        check(lambda: time.sleep(0.5))
    finally:
        stop.set()
        busy.join()

    def spin():
        end = time.thread_time() + 0.4
        while time.thread_time() < end:
            pass

    with pytest.raises(AssertionError, match="thread CPU seconds"):
        check(spin)


def test_policy_threshold_past_float_range_regression():
    """Found by test_policy_loader (CVAUDIT_FUZZ=2400): ``min: 10**400`` raised OverflowError in
    policies/schema.py ``_number``; now one PolicyError line."""
    data = VALID_POLICY.replace(b"min: 0.9", b"min: 1" + b"0" * 400)
    with pytest.raises(CvauditError, match="too large for a float") as caught:
        parse_policy(data, source="policy.yaml")
    check_message(caught.value)
