"""PAdES signature of ``report.pdf`` with pyHanko, offline.

The signature is ECDSA P-256 over SHA-256 with ``/SubFilter
/ETSI.CAdES.detached`` (PAdES baseline B-B), made with the key folder's
self-signed certificate, which is embedded in the signature. No timestamp
authority, OCSP or CRL is contacted.

The signed file stays a PDF 1.7 document, as PDF/A-3b requires: pyHanko would
otherwise declare ``/Version /2.0`` and the ISO 32002 extension because ECDSA
on P-256 is specified for PDF signatures in ISO 32002 (an extension of PDF
2.0). PAdES on PDF 1.7 is declared instead with the ETSI ESIC extension
(``/ESIC``, level 2), which ETSI EN 319 142-1 defines for exactly this case;
see :class:`_Pdf17Signer`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from reports.atomic import atomic_write_bytes
from reports.keys import SigningError, SigningKeys, load_signing_keys

__all__ = ["SIGNATURE_FIELD", "sign_pdf", "sign_pdf_bytes"]

SIGNATURE_FIELD = "cvaudit-report"


def sign_pdf_bytes(pdf: bytes, keys: SigningKeys, *, reason: str = "cvaudit audit report") -> bytes:
    """Return ``pdf`` with a PAdES signature appended as an incremental update.

    Args:
        pdf: The complete, unsigned PDF.
        keys: Keys loaded with :func:`reports.keys.load_signing_keys`.
        reason: The signature's ``/Reason`` text.

    Returns:
        The signed PDF; the signature covers the whole file.

    Raises:
        SigningError: ``pdf`` cannot be parsed as a PDF.
    """
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert = asn1_x509.Certificate.load(keys.pdf_cert.public_bytes(serialization.Encoding.DER))
    key = asn1_keys.PrivateKeyInfo.load(
        keys.pdf_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    signer = signers.SimpleSigner(
        signing_cert=cert, signing_key=key, cert_registry=SimpleCertificateStore.from_certs([cert])
    )
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        out = _pdf17_signer_class()(meta, signer).sign_pdf(writer)
    except (PdfError, ValueError) as exc:
        raise SigningError(f"cannot sign PDF: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return out.getvalue()


def _pdf17_signer_class():
    """A :class:`pyhanko.sign.signers.PdfSigner` that keeps the document at PDF 1.7 (PDF/A-3b).

    pyHanko's ``PdfSigner.register_extensions`` adds the ESIC extension for
    PAdES and, for ECDSA on a NIST curve, the ISO 32002 extension, which raises
    the catalogue's ``/Version`` to 2.0. The override registers only what PAdES
    on PDF 1.7 needs; the signature bytes are the same.
    """
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.sign.signers.pdf_signer import _ensure_esic_ext

    class _Pdf17Signer(signers.PdfSigner):
        def register_extensions(self, pdf_out, *, md_algorithm: str) -> None:
            if self.signature_meta.subfilter == SigSeedSubFilter.PADES:
                _ensure_esic_ext(pdf_out)

    return _Pdf17Signer


def sign_pdf(
    pdf_path: str | os.PathLike[str],
    key_dir: str | os.PathLike[str] | SigningKeys,
    passphrase: bytes | None = None,
) -> Path:
    """Sign a PDF in place, atomically; meant as the very last write of a report.

    The file is read, signed in memory and replaced with
    :func:`reports.atomic.atomic_write_bytes`, so an interrupted run leaves the
    unsigned file, never a half-written or wrongly signed one.

    Args:
        pdf_path: The PDF to sign.
        key_dir: A key folder (see :mod:`reports.keys`) or already loaded keys.
        passphrase: Passphrase of the key folder's private keys.

    Returns:
        ``pdf_path``.

    Raises:
        SigningError: The keys cannot be used or the file is not a PDF.
    """
    keys = key_dir if isinstance(key_dir, SigningKeys) else load_signing_keys(key_dir, passphrase)
    path = Path(pdf_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot be read ({exc.strerror})") from None
    return atomic_write_bytes(path, sign_pdf_bytes(data, keys))
