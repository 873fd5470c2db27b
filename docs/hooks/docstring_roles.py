"""MkDocs hook: Sphinx cross-reference roles in docstrings are shown as their code, without the role.

The docstrings follow the Python convention of ``:class:`X```, ``:func:`f``` and the like, which
mkdocstrings renders as the literal role text followed by the code (``:class:<code>X</code>``). This
hook removes the role text before the code element, so the API pages read ``X`` as the source meant,
and turns a reST literal-block marker (a paragraph ending in ``::``) into a single colon.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|ref):(?=<code)")
_LITERAL_MARKER = re.compile(r"(\w)::(</p>)")


def on_page_content(html: str, **kwargs: object) -> str:
    """Remove role prefixes and literal-block markers from a rendered page (API pages hold them)."""
    return _LITERAL_MARKER.sub(r"\1:\2", _ROLE.sub("", html))
