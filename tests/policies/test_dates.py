"""Date parsing: ISO 8601 variants, day-first, month-first, strptime patterns."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from policies.dates import parse_date

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("20240301", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T10:20", datetime(2024, 3, 1, 10, 20, tzinfo=UTC)),
        ("2024-03-01 10:20:30", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30.5Z", datetime(2024, 3, 1, 10, 20, 30, 500000, tzinfo=UTC)),
        ("2024-03-01T10:20:30+02:00", datetime(2024, 3, 1, 8, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30-0530", datetime(2024, 3, 1, 15, 50, 30, tzinfo=UTC)),
        ("2024-03-01T01:00+02", datetime(2024, 2, 29, 23, 0, tzinfo=UTC)),
        ("  2024-03-01  ", datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_iso(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("01/03/2024", "day_first", datetime(2024, 3, 1, tzinfo=UTC)),
        ("1.3.2024", "day_first", datetime(2024, 3, 1, tzinfo=UTC)),
        ("31-12-2023 23:59", "day_first", datetime(2023, 12, 31, 23, 59, tzinfo=UTC)),
        ("01/03/2024", "month_first", datetime(2024, 1, 3, tzinfo=UTC)),
        ("12/31/2023 08:00:00Z", "month_first", datetime(2023, 12, 31, 8, tzinfo=UTC)),
        ("2024-03-01", "day_first", datetime(2024, 3, 1, tzinfo=UTC)),  # ISO always accepted
        ("01 Mar 2024", "%d %b %Y", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024/03/01 10:00 +0100", "%Y/%m/%d %H:%M %z", datetime(2024, 3, 1, 9, tzinfo=UTC)),
    ],
)
def test_explicit_formats(text, fmt, expected):
    assert parse_date(text, date_format=fmt) == expected


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("", "iso"),
        ("yesterday", "iso"),
        ("01/03/2024", "iso"),  # ambiguous without an explicit order
        ("2024-02-30", "iso"),
        ("2024-13-01", "iso"),
        ("31/12/2023", "month_first"),
        ("2024-03-01T25:00", "iso"),
        ("2024-03-01T10:00+25:00", "iso"),
        ("1 March", "%d %B %Y"),
    ],
)
def test_unparseable(text, fmt):
    with pytest.raises(ValueError):
        parse_date(text, date_format=fmt)
