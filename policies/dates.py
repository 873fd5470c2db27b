"""Parse manifest dates without guessing.

``date_format`` (set in the policy's ``governance`` section) is one of:

- ``"iso"`` (default): ISO 8601 ``YYYY-MM-DD``, ``YYYYMMDD``, optionally
  followed by ``T`` or a space, ``HH:MM[:SS[.fff]]`` and a zone (``Z``,
  ``+02:00``, ``+0200``, ``+02``);
- ``"day_first"``: ``DD/MM/YYYY`` (separators ``/``, ``.`` or ``-``), optional
  ``HH:MM[:SS]`` and zone;
- ``"month_first"``: ``MM/DD/YYYY``, likewise;
- a :func:`~datetime.datetime.strptime` pattern containing ``%``, e.g. ``"%d %b %Y"``.

ISO 8601 is always accepted too: it starts with the year, so it cannot be
mistaken for either order. With a strptime pattern the pattern is tried
first and only extended ISO 8601 (``YYYY-MM-DD...``, with separators) is the
fallback: the basic form ``YYYYMMDD`` could be the pattern's own digits in
another order (``"%Y%d%m"``, ``"%d%m%Y"``). A value without a zone is taken as UTC. Every
result is an aware :class:`~datetime.datetime` in UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_ZONE = r"(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?"
_TIME = r"(?:[T ](?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,9}))?)?\s*" + _ZONE + r")?"
_ISO = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})" + _TIME + r"$")
_ISO_BASIC = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$")
_NUMERIC_TIME = r"(?:[T ]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*" + _ZONE + r")?"
_DAY_FIRST = re.compile(r"^(?P<d>\d{1,2})(?P<sep>[/.-])(?P<m>\d{1,2})(?P=sep)(?P<y>\d{4})" + _NUMERIC_TIME + r"$")
_MONTH_FIRST = re.compile(r"^(?P<m>\d{1,2})(?P<sep>[/.-])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4})" + _NUMERIC_TIME + r"$")

DATE_FORMATS = ("iso", "day_first", "month_first")


def parse_date(text: str, *, date_format: str = "iso") -> datetime:
    """Parse one date or date-time.

    Args:
        text: The stored value (surrounding spaces are ignored).
        date_format: ``"iso"``, ``"day_first"``, ``"month_first"`` or a
            strptime pattern.

    Returns:
        An aware datetime in UTC (midnight for a date without time).

    Raises:
        ValueError: the value does not match, or names an impossible date.

    >>> parse_date("2024-03-01T10:00:00+01:00").isoformat()
    '2024-03-01T09:00:00+00:00'
    >>> parse_date("01/03/2024", date_format="day_first").date().isoformat()
    '2024-03-01'
    """
    value = str(text).strip()
    if not value:
        raise ValueError("empty date")
    if "%" in date_format:
        try:
            return _to_utc(datetime.strptime(value, date_format))
        except ValueError:
            match = _ISO.match(value)
            if match is None:
                raise ValueError(f"not {describe_date_format(date_format)}") from None
            return _from_match(match)
    match = _ISO.match(value) or _ISO_BASIC.match(value)
    if match is None:
        if date_format == "day_first":
            match = _DAY_FIRST.match(value)
        elif date_format == "month_first":
            match = _MONTH_FIRST.match(value)
        elif date_format != "iso":
            raise ValueError(f"unknown date_format {date_format!r}")
    if match is None:
        raise ValueError(f"not {describe_date_format(date_format)}")
    return _from_match(match)


def describe_date_format(date_format: str) -> str:
    """``"an ISO date"``, ``"a day-first date"`` ... for messages.

    >>> describe_date_format("iso")
    'an ISO date'
    """
    return {
        "iso": "an ISO date",
        "day_first": "a day-first date (DD/MM/YYYY)",
        "month_first": "a month-first date (MM/DD/YYYY)",
    }.get(date_format, f"a date in the format {date_format!r}")


def _from_match(match: re.Match[str]) -> datetime:
    parts = match.groupdict()
    fraction = (parts.get("f") or "0")[:6].ljust(6, "0")
    moment = datetime(
        int(parts["y"]),
        int(parts["m"]),
        int(parts["d"]),
        int(parts.get("H") or 0),
        int(parts.get("M") or 0),
        int(parts.get("S") or 0),
        int(fraction),
    )
    zone = parts.get("zone")
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError("bad zone offset")
        moment = moment.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    return _to_utc(moment)


def _to_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
