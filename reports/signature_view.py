"""The "Signature" section of the report: who signs it, known from the key folder at render time.

The report is rendered before the PDF is signed, so it cannot point at its
own signature; it states what the key folder given as ``report.sign_key``
will sign with: the signing certificate's subject and fingerprint, the trust
anchor it is verified with (the root of ``ca.cert.pem``, or the certificate
itself for an older, self-signed key folder) and the attestation key. Every
fingerprint is ``sha256:<hex>`` over the DER encoding of the certificate
(for the attestation key, of its SubjectPublicKeyInfo): the values
``cvaudit verify`` prints and ``public/trust.txt`` lists, and what
``openssl x509 -noout -fingerprint -sha256`` prints in colon-separated upper
case. Without keys the section says the report is unsigned.
"""

from __future__ import annotations

from typing import Any

from audit.contract.text import neutralise
from reports.keys import SigningKeys, certificate_fingerprint

__all__ = ["signature_view"]


def signature_view(keys: SigningKeys | None, *, pdf: bool = True) -> dict[str, Any] | None:
    """The data of the report's "Signature" section.

    Args:
        keys: The loaded key folder, or ``None`` for an unsigned report.
        pdf: Whether a PDF (which gets the PAdES signature) is written.

    Returns:
        ``None`` for an unsigned report; otherwise ``subject`` and
        ``fingerprint`` of the signing certificate, ``issuer`` (its issuer's
        subject), ``anchor`` (``kind`` ``"ca"`` or ``"self-signed"``,
        ``subject``, ``fingerprint``), ``attestation_key`` and ``pdf``.
    """
    if keys is None:
        return None
    anchor = keys.anchor
    return {
        "subject": neutralise(keys.subject),
        "fingerprint": keys.certificate_fingerprint,
        "issuer": neutralise(keys.pdf_cert.issuer.rfc4514_string()),
        "anchor": {
            "kind": "ca" if keys.chain else "self-signed",
            "subject": neutralise(anchor.subject.rfc4514_string()),
            "fingerprint": certificate_fingerprint(anchor),
        },
        "attestation_key": keys.attestation_key_id,
        "pdf": pdf,
    }
