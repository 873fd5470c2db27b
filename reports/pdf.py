"""HTML to PDF/A-3b with WeasyPrint, offline, with results.json attached.

The URL fetcher given to WeasyPrint serves ``data:`` URIs only: a report
that refers to ``http:``, ``https:`` or ``file:`` resources renders without
them instead of reaching the network or the disk.
"""

from __future__ import annotations

import os
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


def pdf_bytes(html: str, *, attachments: Sequence[str | os.PathLike[str]] = ()) -> bytes:
    """Render ``html`` to PDF/A-3b bytes.

    Args:
        html: A self-contained HTML document (see :func:`reports.html.render_html`).
        attachments: Files embedded in the PDF under their file name (read
            here, not through the URL fetcher), for example ``results.json``.

    Returns:
        The PDF.

    Raises:
        OSError: An attachment cannot be read.
    """
    from weasyprint import HTML, Attachment

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
    document = HTML(string=html, base_url=None, url_fetcher=fetcher)
    return document.write_pdf(pdf_variant="pdf/a-3b", attachments=embedded, uncompressed_pdf=False)


def render_pdf(html: str, out_path: str | os.PathLike[str], *, attachments: Sequence[Path] = ()) -> None:
    """Render ``html`` to a PDF/A-3b file, written atomically.

    Args:
        html: A self-contained HTML document.
        out_path: The PDF to write (replaced atomically).
        attachments: Files to embed, typically ``[out_dir / "results.json"]``.

    Raises:
        OSError: An attachment cannot be read or the file cannot be written.
    """
    atomic_write_bytes(out_path, pdf_bytes(html, attachments=attachments))
