"""Every seed cvaudit uses is derived here, from the audit's seed and names.

Randomness is keyed by what a value is for (the stressor, the severity, the
sample id ...), never by batch position, process or order of arrival, so a run
gives the same numbers whatever the batch size, shard or device count.

- :func:`sample_key` turns a sample id into a stable 63-bit integer key;
- :func:`derive_seed` turns any sequence of parts (the audit seed first, then
  names and keys) into an independent 63-bit seed;
- :func:`stream_seed` splits one derived seed into independent numbered
  streams (several draws for one sample) without hashing again.
"""

from __future__ import annotations

import hashlib

__all__ = ["MASK63", "derive_seed", "sample_key", "stream_seed"]

MASK63 = (1 << 63) - 1
_STREAM_MIX = 0x9E3779B97F4A7C15


def _hash63(material: str) -> int:
    digest = hashlib.sha256(material.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & MASK63


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts``.

    Parts are joined as ``"|".join(str(p))`` and hashed with SHA-256, so
    ``derive_seed(0, "night", 3.0, key)`` is the same on every machine and
    process. Floats are written with ``repr`` (``3.0``, ``0.0078431``).

    >>> derive_seed(0, "night", 3.0, 17) == derive_seed(0, "night", 3.0, 17)
    True
    >>> derive_seed(0, "night", 3.0, 17) != derive_seed(1, "night", 3.0, 17)
    True
    """
    return _hash63("|".join(repr(p) if isinstance(p, float) else str(p) for p in parts))


def sample_key(sample_id: str) -> int:
    """A stable 63-bit integer key of a sample id (the same in every process)."""
    return _hash63(sample_id)


def stream_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for draw number ``stream`` of one derived seed."""
    return (seed ^ ((stream * _STREAM_MIX) & MASK63)) & MASK63
