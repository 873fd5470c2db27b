"""Benchmark: render the report of 20 conditions x 10 groups as HTML and PDF.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_report.py [--out DIR] [--sign]

Prints the seconds for HTML, PDF and (with ``--sign``) signing + attestation,
best of ``--repeat`` runs after one warm-up. The target is HTML + PDF under
10 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reports"))

from reports_fixture import make_results

from reports.html import render_html
from reports.pdf import render_pdf


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs in this folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sign", action="store_true", help="also time keygen-free signing and the attestation")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="cvaudit-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    results = make_results()
    groups = len(results["conditions"][0]["groups"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    render_pdf(render_html(results), out / "report.pdf", attachments=[out / "results.json"])  # warm-up
    html_s, pdf_s = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        html = render_html(results)
        (out / "report.html").write_text(html)
        t1 = time.perf_counter()
        render_pdf(html, out / "report.pdf", attachments=[out / "results.json"])
        t2 = time.perf_counter()
        html_s.append(t1 - t0)
        pdf_s.append(t2 - t1)
    best = min(h + p for h, p in zip(html_s, pdf_s))
    print(
        f"conditions={len(results['conditions'])} groups={groups} html_s={min(html_s):.3f} "
        f"pdf_s={min(pdf_s):.3f} total_best_s={best:.3f} total_worst_s={max(h + p for h, p in zip(html_s, pdf_s)):.3f}"
    )
    if args.sign:
        from reports import write_reports
        from reports.keys import keygen

        keys = out / "keys"
        if not keys.exists():
            keygen(keys)
        t0 = time.perf_counter()
        write_reports(out, results, sign_key=keys)
        print(f"write_reports_signed_s={time.perf_counter() - t0:.3f}")
    print(f"outputs in {out}", file=sys.stderr)
    return 0 if best < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
