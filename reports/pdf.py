"""HTML to a tagged PDF/A-3b that claims PDF/UA-1, with WeasyPrint, offline, with results.json attached.

WeasyPrint renders with ``pdf_variant="pdf/a-3b"`` and ``pdf_tags=True``
(structure tree, figures with alternative text, table headers, language,
document title shown in the title bar); :mod:`reports.pdfua` completes it
(one XMP packet with both identifications, running footers as artifacts,
link descriptions). The checks are in ``tests/reports/test_report_pdf_ua.py``.

The URL fetcher given to WeasyPrint serves ``data:`` URIs only: a report
that refers to ``http:``, ``https:`` or ``file:`` resources renders without
them instead of reaching the network or the disk.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from pathlib import Path

from reports.atomic import atomic_write_bytes

__all__ = ["BlockedURLError", "offline_url_fetcher", "pdf_bytes", "render_pdf"]


class BlockedURLError(ValueError):
    """Raised by the fetcher for any URL that is not a ``data:`` URI."""


def offline_url_fetcher():
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and nothing else.

    Returns:
        A :class:`weasyprint.urls.URLFetcher` whose ``fetch`` raises
        :class:`BlockedURLError` for every other scheme (http, https, file,
        ftp...), before any connection or file access.
    """
    from weasyprint.urls import URLFetcher

    class _OfflineFetcher(URLFetcher):
        def __init__(self) -> None:
            super().__init__(allowed_protocols={"data"}, allow_redirects=False, timeout=1)

        def fetch(self, url, headers=None):
            if not str(url).lower().startswith("data:"):
                raise BlockedURLError(f"blocked non-data URL in report: {str(url)[:80]}")
            return super().fetch(url, headers)

    return _OfflineFetcher()


def pdf_bytes(
    html: str, *, attachments: Sequence[str | os.PathLike[str]] = (), now: dt.datetime | None = None
) -> bytes:
    """Render ``html`` to a tagged PDF/A-3b (claiming PDF/UA-1).

    Args:
        html: A self-contained HTML document (see :func:`reports.html.render_html`);
            its ``<html lang>`` is the PDF's language (``en`` when missing) and
            its ``<title>`` the document title.
        attachments: Files embedded in the PDF under their file name (read
            here, not through the URL fetcher), for example ``results.json``.
        now: Creation time written to the metadata (default: the current UTC time).

    Returns:
        The PDF.

    Raises:
        OSError: An attachment cannot be read.
    """
    from weasyprint import HTML, Attachment

    from reports.pdfua import finisher, section_titles

    fetcher = offline_url_fetcher()
    embedded = []
    for item in attachments:
        path = Path(item)
        embedded.append(
            Attachment(
                string=path.read_bytes(),
                name=path.name,
                url_fetcher=fetcher,
                relationship="Data",
                description=f"{path.name} (machine-readable source of this report)",
            )
        )
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    finish = finisher(language=_language(html), when=when, link_titles=section_titles(html))
    document = HTML(string=html, base_url=None, url_fetcher=fetcher)
    return document.write_pdf(
        pdf_variant="pdf/a-3b", pdf_tags=True, attachments=embedded, uncompressed_pdf=False, finisher=finish
    )


def _language(html: str) -> str:
    """The ``lang`` of the ``<html>`` element, ``en`` when there is none."""
    match = re.search(r"<html\b[^>]*?\blang=[\"']?([A-Za-z0-9-]+)", html, flags=re.IGNORECASE)
    return match.group(1) if match else "en"


def render_pdf(html: str, out_path: str | os.PathLike[str], *, attachments: Sequence[Path] = ()) -> None:
    """Render ``html`` to a tagged PDF/A-3b file (claiming PDF/UA-1), written atomically.

    Args:
        html: A self-contained HTML document.
        out_path: The PDF to write (replaced atomically).
        attachments: Files to embed, typically ``[out_dir / "results.json"]``.

    Raises:
        OSError: An attachment cannot be read or the file cannot be written.
    """
    atomic_write_bytes(out_path, pdf_bytes(html, attachments=attachments))
