"""Conservative patterns for personal data inside manifest values.

The scan prefers missing a value over flagging an innocent one: a phone
number needs a ``+`` country code or the North-American ``(555) 123-4567`` /
``555-123-4567`` shape, so dates, sizes and ids do not match; national ids
are US social security numbers and UK national insurance numbers.
Matches are only counted; the values are never returned.
"""

from __future__ import annotations

import re

PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": re.compile(
        r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w-])"
    ),
    "national_id": re.compile(
        r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
        r"|(?<!\w)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"
    ),
}
_MAX_SCANNED_CHARS = 2000


def pii_kinds(value: object, patterns: list[str] | tuple[str, ...] = tuple(PATTERNS)) -> list[str]:
    """Which of ``patterns`` occur in ``value`` (only strings are scanned).

    >>> pii_kinds("write to jane.doe@example.org")
    ['email']
    >>> pii_kinds("2024-03-01")
    []
    """
    if not isinstance(value, str) or not value:
        return []
    text = value[:_MAX_SCANNED_CHARS]
    return [kind for kind in patterns if PATTERNS[kind].search(text)]


def normalise_column(name: str) -> str:
    """Lower-case, with spaces and hyphens as underscores (``"E-mail"`` -> ``"e_mail"``)."""
    return re.sub(r"[\s-]+", "_", str(name).strip().lower())


# Token-based detection of personal-data column names. Deliberately small:
# a token flags a column only when it almost always means a person's data.
_NAME_TOKENS = frozenset(
    {
        "name",
        "names",
        "fullname",
        "firstname",
        "lastname",
        "surname",
        "forename",
        "givenname",
        "familyname",
        "maidenname",
        "middlename",
        "nickname",
    }
)
_NOT_A_PERSON = frozenset(
    {
        "file",
        "image",
        "img",
        "class",
        "label",
        "camera",
        "site",
        "model",
        "dataset",
        "species",
        "category",
        "device",
        "sensor",
        "location",
        "city",
        "country",
        "region",
        "product",
        "object",
        "scene",
        "folder",
        "dir",
        "directory",
        "path",
        "host",
        "project",
        "split",
        "attribute",
        "column",
        "condition",
        "stressor",
        "brand",
        "place",
        "breed",
        "org",
        "organisation",
        "organization",
        "company",
        "hospital",
        "clinic",
        "lab",
        "study",
        "source",
        "domain",
        "task",
        "layer",
        "feature",
        "field",
        "color",
        "colour",
        "font",
        "style",
        "type",
        "kind",
        "set",
        "batch",
        "run",
        "experiment",
        "team",
        "shop",
        "store",
        "street",
        "node",
        "server",
        "bucket",
        "artifact",
        "asset",
        "lens",
        "scanner",
    }
)
_TOKEN_KINDS = {
    "email": frozenset({"email", "emails", "mail", "emailaddress"}),
    "phone": frozenset({"phone", "phones", "mobile", "tel", "telephone", "phonenumber", "fax"}),
    "address": frozenset({"address", "addresses", "addr", "street", "postcode", "zipcode"}),
    "birth": frozenset({"dob", "birth", "birthdate", "birthday"}),
    "national_id": frozenset({"ssn", "passport", "iban", "nino", "taxid", "nationalid"}),
}
_PAIR_KINDS = {
    ("e", "mail"): "email",
    ("national", "id"): "national_id",
    ("tax", "id"): "national_id",
    ("social", "security"): "national_id",
    ("driver", "license"): "national_id",
    ("drivers", "license"): "national_id",
    ("driving", "licence"): "national_id",
    ("zip", "code"): "address",
    ("post", "code"): "address",
}


def column_tokens(name: str) -> list[str]:
    """Name tokens: camelCase split, lower-cased, split on anything not a letter or digit.

    >>> column_tokens("E-mail Address")
    ['e', 'mail', 'address']
    >>> column_tokens("customerEmail")
    ['customer', 'email']
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def pii_column_kind(name: str) -> str | None:
    """What kind of personal data a column name suggests, or ``None``.

    Conservative token rules over :func:`column_tokens`:

    - ``name`` (and ``surname``, ``first_name``, ``fullname`` ...) unless the
      token just before it names a thing, not a person (``file_name``,
      ``class_name``, ``image_name``, ``camera_name``, ``site_name`` ...;
      single tokens such as ``filename`` never match);
    - ``email``, ``mail``, ``e_mail`` -> ``email``; ``phone``, ``mobile``,
      ``tel``, ``telephone``, ``fax`` -> ``phone``; ``address``, ``street``,
      ``postcode``, ``zip_code`` -> ``address``; ``dob``, ``birth``,
      ``birthday`` -> ``birth``; ``ssn``, ``passport``, ``iban``,
      ``national_id``, ``tax_id``, ``social_security``, ``driver_license`` ->
      ``national_id``.

    >>> [pii_column_kind(c) for c in ("patient_name", "file_name", "E-mail Address")]
    ['name', None, 'email']
    """
    tokens = column_tokens(name)
    for index, token in enumerate(tokens):
        if token in _NAME_TOKENS:
            before = tokens[index - 1] if index else None
            if token in ("name", "names") and before in _NOT_A_PERSON:
                continue
            return "name"
    for kind, words in _TOKEN_KINDS.items():
        if any(token in words for token in tokens):
            return kind
    for pair in zip(tokens, tokens[1:]):
        if pair in _PAIR_KINDS:
            return _PAIR_KINDS[pair]
    return None
