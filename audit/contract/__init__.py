"""The contract layer, at the bottom of cvaudit: what every other layer may rely on.

- the results.json contract: :class:`Results` (typed models), its JSON Schema
  (:mod:`audit.contract.schema`) and the one reader :func:`load_results`;
- the config file's schema (:mod:`audit.contract.config`);
- errors and exit codes (:class:`CvauditError`, :class:`ExitCode`);
- shared primitives: seeds (:mod:`~audit.contract.seeds`), file digests, the
  tool version, the manifest reader, the YAML loader and group statistics;
- the registries: metrics (:mod:`~audit.contract.metric_specs`) and interval
  methods (:mod:`~audit.contract.intervals`).

Nothing here imports torch, the evaluator, the policies, the reports or the
stressors (an import-linter contract checks it).
"""

from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError, CvauditError, ExitCode
from audit.contract.load import ResultsError, load_results, parse_results
from audit.contract.results import SCHEMA_VERSION, Results
from audit.contract.version import tool_version

__all__ = [
    "SCHEMA_VERSION",
    "AuditError",
    "CvauditError",
    "ExitCode",
    "Results",
    "ResultsError",
    "load_results",
    "parse_results",
    "sha256_file",
    "tool_version",
]
