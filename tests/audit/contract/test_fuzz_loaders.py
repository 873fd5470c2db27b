"""Property-based fuzzing of the input loaders (issue 13, point 7).

Every input to the config loader, the policy loader, the manifest reader and
``load_results`` either loads or raises cvaudit's own error type
(:class:`CvauditError`, exit code 2 with one line), within bounded time and
memory; any other exception is a bug and fails the test. Inputs are random
bytes, random documents built from each format's own vocabulary (so that
validation, not only parsing, is exercised), and byte-level mutations of valid
files, plus the adversarial shapes that found bugs: deep nesting, huge
integers, alias bombs, NUL bytes, lone surrogates, home-directory paths.

Profiles (``CVAUDIT_FUZZ=ci`` by default, a few thousand examples in all;
``make fuzz`` runs ``CVAUDIT_FUZZ=long`` with many more): no example database
is written.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from results_builder import complete_results

from audit.contract.config import load_config
from audit.contract.errors import MAX_MESSAGE, CvauditError
from audit.contract.load import load_results, parse_results
from audit.contract.manifest import read_manifest_rows
from policies.loader import parse_policy

PROFILES = {"smoke": 30, "ci": 600, "long": 20_000}
EXAMPLES = PROFILES[os.environ.get("CVAUDIT_FUZZ", "ci")]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is bounded per example below in CPU seconds, which a loaded machine does not inflate
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# A CPU-time budget, not a wall-clock limit (no unit test asserts wall-clock time): it catches an
# input that makes a loader work for ever (alias bombs, quadratic parsing), not a slow machine.
# Generous: tracemalloc slows pure-Python parsing several times over.
CPU_SECONDS = 10.0
MEGABYTES = 64.0

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
NASTY_TEXT = st.sampled_from(
    ["", "~nobody-here/x", "~/x", "a\x00b", "\ud800", "../../etc/passwd", "1" * 5000, "nan", "-inf", "*", "@", "é" * 10]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    NASTY_TEXT,
)


def documents(keys: list[str]) -> st.SearchStrategy:
    """Nested data whose mapping keys come mostly from ``keys``."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(key, inner, max_size=6)),
        max_leaves=30,
    )


def mutations(valid: bytes) -> st.SearchStrategy:
    """``valid`` with a few bytes replaced, inserted or deleted."""

    @st.composite
    def mutate(draw):
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            op = draw(st.sampled_from(["set", "insert", "delete"]))
            byte = draw(st.integers(0, 255))
            if op == "set" and data:
                data[pos] = byte
            elif op == "insert":
                data[pos:pos] = bytes([byte]) * draw(st.integers(1, 4))
            elif data:
                del data[pos : pos + draw(st.integers(1, 8))]
        return bytes(data)

    return mutate()


def adversarial() -> st.SearchStrategy:
    depth = st.integers(50, 3000)
    return st.one_of(
        depth.map(lambda n: ("[" * n + "]" * n).encode()),
        depth.map(lambda n: ("{a: " * n + "1" + "}" * n).encode()),
        st.integers(4300, 20_000).map(lambda n: ("1" * n).encode()),
        st.just(b"a: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"),
        st.just(b"\xff\xfe\x00garbage"),
        st.just(b"!!python/object/apply:os.system [echo hi]"),
        st.just(b"---\na: 1\n---\nb: 2\n"),
    )


def inputs(keys: list[str], valid: bytes) -> st.SearchStrategy:
    as_yaml = documents(keys).map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8", "surrogatepass"))
    as_json = documents(keys).map(lambda d: json.dumps(d).encode())
    return st.one_of(st.binary(max_size=300), as_yaml, as_json, mutations(valid), adversarial())


def check(call) -> None:
    """``call()`` loads or raises a one-line CvauditError, within time and memory bounds."""
    tracemalloc.start()
    started = time.process_time()
    try:
        call()
    except CvauditError as err:
        message = str(err)
        assert "\n" not in message and len(message) <= MAX_MESSAGE
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    used = time.process_time() - started
    assert used < CPU_SECONDS, f"used {used:.2f} CPU seconds"
    assert peak < MEGABYTES * 1e6, f"peak {peak / 1e6:.1f} MB"


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


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@SETTINGS
@given(data=inputs([k for keys in CONFIG_KEYS.values() for k in keys], VALID_CONFIG))
def test_config_loader(folder, data):
    path = folder / "config.yaml"
    path.write_bytes(data)
    check(lambda: load_config(path))


@SETTINGS
@given(data=inputs(POLICY_KEYS, VALID_POLICY))
def test_policy_loader(data):
    check(lambda: parse_policy(data, source="policy.yaml"))


@SETTINGS
@given(
    data=st.one_of(
        inputs(["path", "label", "camera", "sample_id"], VALID_MANIFEST),
        st.lists(documents(["path", "label", "camera"]), max_size=4).map(
            lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
        ),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".ndjson", ".json"]),
)
def test_manifest_reader(folder, data, suffix):
    path = folder / f"manifest{suffix}"
    path.write_bytes(data)
    check(lambda: read_manifest_rows(path))


def _valid_results() -> bytes:
    return json.dumps(complete_results({})).encode()


@SETTINGS
@given(data=inputs(RESULT_KEYS, _valid_results()))
def test_load_results(folder, data):
    path = folder / "results.json"
    path.write_bytes(data)
    check(lambda: load_results(path))
    check(lambda: parse_results(data, source="results.json"))


@SETTINGS
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
