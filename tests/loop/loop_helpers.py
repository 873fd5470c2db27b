"""Helpers shared by the loop command tests: a finished tiny run, one-line error checks."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from cvaudit_fixtures import make_dataset, save_model, write_config
from mlflow_server import stop_session
from torch import nn

from audit.cli import main

GOVERNANCE = """\
governance:
  retention: {period_days: 3650, blocking: false}
  consent: {blocking: false}
  region: {allowed: [EU], blocking: false}
"""


class Confused(nn.Module):
    """Sure of the wrong class: predicts the next colour channel with a large margin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * x.mean(dim=(2, 3)).roll(1, dims=1)


def finish_run(root: Path, *, stressors: str | None = None, model: nn.Module | None = None) -> Path:
    make_dataset(root)
    manifest = root / "manifest.csv"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["region"] = "EU"
    rows[1]["consent"] = "withdrawn"
    rows[2]["consent"] = ""
    rows[3]["capture_date"] = "2001-01-01"
    rows[4]["region"] = "US"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    save_model(root / "model.pt", model or Confused())
    cfg = write_config(root, stressors=stressors)
    text = (root / "policy.yaml").read_text().replace("min: 0.5", "min: 0.0")
    (root / "policy.yaml").write_text(text + GOVERNANCE)
    out = root / "run"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    return out


def one_line_error(result, needle):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("cvaudit: error: ") and needle in lines[0], lines[0]


DETECTION_POLICY = """\
version: 1
name: detection-loop
on_insufficient_data: warn
rules:
  - {id: clean-map, condition: clean, metric: map, min: 0.0}
governance:
  retention: {period_days: 3650, blocking: false}
  consent: {blocking: false}
  region: {allowed: [EU], blocking: false}
"""

#: sample id -> the governance check that holds it back in :func:`finish_detection_run`'s manifest.
DETECTION_HELD = {
    "s001": "consent_withdrawn",
    "s002": "consent_missing",
    "s003": "retention_expired",
    "s004": "region_not_allowed",
}


def finish_detection_run(root: Path, n: int = 24) -> Path:
    """A finished detection run (tests/detection_fixtures.py's colour scenes and ColourBoxNet, night@3) whose
    manifest holds one governance violation per :data:`DETECTION_HELD` sample; returns the run folder."""
    from detection_fixtures import make_detection_dataset, save_detector, write_detection_config

    _, manifest = make_detection_dataset(root, n=n)
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row |= {"capture_date": "2024-01-01", "consent": "granted", "region": "EU"}
    rows[1]["consent"] = "withdrawn"
    rows[2]["consent"] = ""
    rows[3]["capture_date"] = "2001-01-01"
    rows[4]["region"] = "US"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "policy.yaml").write_text(DETECTION_POLICY)
    cfg = write_detection_config(root, save_detector(root / "detector.pt"), policy="policy.yaml")
    out = root / "run"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    return out


def _label_studio() -> str:
    """The Label Studio executable for the live test: CVAUDIT_LABEL_STUDIO, else `label-studio` on PATH.

    Label Studio is not a dependency of cvaudit (a Django application that pins other versions of shared
    packages): ``.ci/run`` installs it into a virtual environment of its own, outside the checkout, and
    points CVAUDIT_LABEL_STUDIO at it. Elsewhere the test is skipped unless that is set; in CI
    (``CVAUDIT_CI``) a missing Label Studio fails it."""
    exe = os.environ.get("CVAUDIT_LABEL_STUDIO") or shutil.which("label-studio")
    if not exe:
        if os.environ.get("CVAUDIT_CI"):
            pytest.fail("Label Studio is not installed; .ci/run installs it and sets CVAUDIT_LABEL_STUDIO")
        pytest.skip("Label Studio not installed: set CVAUDIT_LABEL_STUDIO to its label-studio executable")
    return exe


def check_in_label_studio(out, tmp_path, check_tasks=None):
    """The documented steps (docs/integrations/label-studio.md) against a real Label Studio: the two variables, a project with labeling_config.xml,
    a Local files storage at QUEUE_DIR/images, tasks.json imported; every task's image is then served (and
    without the storage it is a 404, the step users missed); ``check_tasks(session, base_url, project_id, tasks)``
    checks more while Label Studio runs."""
    requests = pytest.importorskip("requests")
    exe = _label_studio()
    root = out.resolve()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
    }
    cmd = [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    cmd += ["--username", "audit@example.com", "--password", "cvaudit-test-1"]
    log = (tmp_path / "ls.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: at most about 5 minutes for migrations and start-up
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp_path / "ls.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("Label Studio did not start")
        s = requests.Session()
        s.get(f"{base}/user/login/", timeout=30)
        s.post(
            f"{base}/user/login/",
            data={
                "email": "audit@example.com",
                "password": "cvaudit-test-1",
                "csrfmiddlewaretoken": s.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/user/login/"},
            timeout=30,
        )
        headers = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/"}
        config = (root / "labeling_config.xml").read_text()
        project = s.post(f"{base}/api/projects", json={"title": "queue", "label_config": config}, headers=headers)
        assert project.status_code == 201, project.text
        pid = project.json()["id"]
        tasks = json.loads((root / "tasks.json").read_text())
        imported = s.post(f"{base}/api/projects/{pid}/import", json=tasks, headers=headers, timeout=60)
        assert imported.status_code == 201 and imported.json()["task_count"] == len(tasks), imported.text
        first = tasks[0]["data"]["image"]
        assert s.get(f"{base}{first}", timeout=30).status_code == 404  # the two variables alone are not enough
        storage = s.post(
            f"{base}/api/storages/localfiles",
            json={"project": pid, "title": "queue images", "path": str(root / "images"), "use_blob_urls": False},
            headers=headers,
            timeout=30,
        )
        assert storage.status_code == 201, storage.text
        for t in tasks:
            url = t["data"]["image"]
            answer = s.get(f"{base}{url}", timeout=30)
            assert answer.status_code == 200, url
            assert answer.content == (root / url.split("?d=")[1]).read_bytes()
        if check_tasks is not None:
            check_tasks(s, base, pid, tasks)
    finally:
        stop_session(proc)
        log.close()
