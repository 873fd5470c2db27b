"""The run's config and policy, as the loop commands need them (images, manifest rows, governance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.contract.errors import AuditError
from audit.loop.run_folder import RunFolder

__all__ = ["run_config_and_policy"]


def run_config_and_policy(run: RunFolder, config: Path | None, policy_name: str | None) -> tuple[Any, Any]:
    """Load the run's config (or ``config``) and its policy (or ``policy_name``).

    The run's own policy must still be the one it was judged with (same SHA-256),
    so that governance is applied as the run recorded it.

    Raises:
        AuditError: no config recorded or found, or the policy changed since the run.
        PolicyError: the policy cannot be loaded.
    """
    import policies
    from audit.contract.config import load_config

    path = config or run.config_path
    if path is None or not Path(path).is_file():
        raise AuditError(
            f"{run.path}: the run's config {str(path) if path else '(not recorded)'} is not a file; pass --config"
        )
    cfg = load_config(path)
    policy = policies.load_policy(policy_name or cfg.policy)
    recorded = run.results.policy.sha256 if run.results.policy is not None else None
    if policy_name is None and recorded and recorded != policy.sha256:
        raise AuditError(
            f"{run.path}: policy {policy.source} has changed since the run (sha256 {policy.sha256[:12]} != "
            f"{recorded[:12]} recorded); pass --policy to judge governance under it explicitly"
        )
    return cfg, policy
