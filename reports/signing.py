"""PAdES signature of ``report.pdf`` with pyHanko, offline.

The signature is ECDSA P-256 over SHA-256 with ``/SubFilter
/ETSI.CAdES.detached`` (PAdES baseline B-B), made with the key folder's
certificate, which is embedded in the signature together with its issuing
chain (``ca.cert.pem``), so that a verifier holding only the root's
fingerprint can build the path. No timestamp
authority, OCSP or CRL is contacted.

The signed file stays a PDF 1.7 document, as PDF/A-3b requires: pyHanko would
otherwise declare ``/Version /2.0`` and the ISO 32002 extension because ECDSA
on P-256 is specified for PDF signatures in ISO 32002 (an extension of PDF
2.0). PAdES on PDF 1.7 is declared instead with the ETSI ESIC extension
(``/ESIC``, level 2), which ETSI EN 319 142-1 defines for exactly this case;
see :class:`_Pdf17Signer`.

The signed file keeps the report's PDF/A-3b and PDF/UA-1 claims
(:mod:`reports.pdfua`):

- the signature field is an invisible widget (a zero-size rectangle with the
  print flag, as PDF/A requires) that is tagged: a ``/Form`` structure element
  with an object reference to the widget joins the structure tree, the widget
  gets its ``/StructParent`` entry in the parent tree and the field a
  ``/TU`` description, so the widget does not break the tag tree (pyHanko
  notes that an untagged invisible signature cannot satisfy both PDF/A and
  PDF/UA);
- the incremental update sets the producer ("WeasyPrint 70.0; pyHanko
  0.38.0") and the modification date identically in the document-information
  dictionary and in the one XMP packet (pyHanko by itself writes its own name
  into the XMP producer only, which then differs from the dictionary's).
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from audit.contract.files import read_bounded
from reports.atomic import atomic_write_bytes
from reports.keys import SigningError, SigningKeys, load_signing_keys

__all__ = ["MAX_PDF_BYTES", "SIGNATURE_DESCRIPTION", "SIGNATURE_FIELD", "sign_pdf", "sign_pdf_bytes"]

SIGNATURE_FIELD = "cvaudit-report"
#: Largest PDF signed (bytes); it is signed in memory, so the bound is the memory a file can cost.
MAX_PDF_BYTES = 1 << 30
SIGNATURE_DESCRIPTION = "Digital signature of this audit report (PAdES)"


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
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert = asn1_x509.Certificate.load(keys.pdf_cert.public_bytes(serialization.Encoding.DER))
    chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in keys.chain]
    key = asn1_keys.PrivateKeyInfo.load(
        keys.pdf_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    signer = signers.SimpleSigner(
        signing_cert=cert, signing_key=key, cert_registry=SimpleCertificateStore.from_certs([cert, *chain])
    )
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
    )
    try:
        writer = _writer_class()(io.BytesIO(pdf), strict=False)
        _add_tagged_signature_field(writer)
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


def _add_tagged_signature_field(writer) -> None:
    """Add the invisible signature field on page 1 and, in a tagged PDF, tag its widget.

    The widget becomes the object reference of a new ``/Form`` structure
    element, the last kid of the document's top structure element (PDF/UA-1,
    7.18.1 and 7.18.4); ``/Tabs /S`` is set on its page.
    """
    from pyhanko.pdf_utils import generic
    from pyhanko.sign import fields

    fields.append_signature_field(
        writer,
        fields.SigFieldSpec(SIGNATURE_FIELD, on_page=0, readable_field_name=SIGNATURE_DESCRIPTION),
    )
    root = writer.root
    if "/StructTreeRoot" not in root:
        return
    widget_ref = next(ref for ref in root["/AcroForm"]["/Fields"] if ref.get_object().get("/T") == SIGNATURE_FIELD)
    widget = widget_ref.get_object()
    page_ref = widget.raw_get("/P")
    tree = root["/StructTreeRoot"]
    top_ref = tree.raw_get("/K")
    if isinstance(top_ref, generic.ArrayObject):
        top_ref = top_ref.raw_get(0)
    top = top_ref.get_object()
    parent_tree = tree["/ParentTree"]
    nums = parent_tree["/Nums"]
    keys = [int(nums[i]) for i in range(0, len(nums), 2)]
    key = max(keys + [int(tree.get("/ParentTreeNextKey", 0)) - 1]) + 1
    objr = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/OBJR"),
            generic.NameObject("/Obj"): widget_ref,
            generic.NameObject("/Pg"): page_ref,
        }
    )
    form_ref = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/StructElem"),
                generic.NameObject("/S"): generic.NameObject("/Form"),
                generic.NameObject("/P"): top_ref,
                generic.NameObject("/Pg"): page_ref,
                generic.NameObject("/K"): objr,
                generic.NameObject("/Alt"): generic.TextStringObject(SIGNATURE_DESCRIPTION),
            }
        )
    )
    widget[generic.NameObject("/StructParent")] = generic.NumberObject(key)
    nums.append(generic.NumberObject(key))
    nums.append(form_ref)
    tree[generic.NameObject("/ParentTreeNextKey")] = generic.NumberObject(key + 1)
    kids = top.get("/K")
    if isinstance(kids, generic.ArrayObject):
        kids.append(form_ref)
    else:
        top[generic.NameObject("/K")] = generic.ArrayObject([kids, form_ref] if kids is not None else [form_ref])
    page = page_ref.get_object()
    page[generic.NameObject("/Tabs")] = generic.NameObject("/S")
    for obj in (widget, parent_tree, tree, top, page):
        writer.update_container(obj)


def _writer_class():
    """An incremental writer that keeps the information dictionary and the XMP packet consistent.

    pyHanko's own update writes ``pyHanko x.y`` as the XMP producer while the
    dictionary says ``WeasyPrint x.y; pyHanko x.y``, and takes the current time
    twice. The override appends pyHanko to the producer once, takes one time
    (UTC, whole seconds) and writes both into the dictionary and, through
    :func:`reports.xmp.update_packet`, into the XMP packet; a PDF without XMP
    gets none.
    """
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.metadata.model import VENDOR

    from reports.xmp import pdf_date, update_packet

    class _ConsistentMetadataWriter(IncrementalPdfFileWriter):
        def _update_meta(self) -> None:
            when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            info_ref = self.trailer.raw_get("/Info") if "/Info" in self.trailer else None
            info = info_ref.get_object() if info_ref is not None else generic.DictionaryObject()
            producer = str(info.get("/Producer", "") or "")
            producer = producer if VENDOR in producer else (f"{producer}; {VENDOR}" if producer else VENDOR)
            info[generic.NameObject("/Producer")] = generic.TextStringObject(producer)
            info[generic.NameObject("/ModDate")] = generic.TextStringObject(pdf_date(when))
            if info_ref is None:
                self.trailer[generic.NameObject("/Info")] = self.add_object(info)
            else:
                self.update_container(info)
            if "/Metadata" in self.root:
                packet = update_packet(self.root["/Metadata"].data, producer=producer, modified=when)
                stream = generic.StreamObject(
                    {
                        generic.NameObject("/Type"): generic.NameObject("/Metadata"),
                        generic.NameObject("/Subtype"): generic.NameObject("/XML"),
                    },
                    stream_data=packet,
                )
                self.root[generic.NameObject("/Metadata")] = self.add_object(stream)
                self.update_root()

    return _ConsistentMetadataWriter


def sign_pdf(
    pdf_path: str | os.PathLike[str],
    key_dir: str | os.PathLike[str] | SigningKeys,
    passphrase: bytes | None = None,
) -> Path:
    """Sign a PDF in place, atomically; meant as the very last write of a report.

    The file is read (a regular file of at most :data:`MAX_PDF_BYTES`, checked on its
    descriptor before reading: :func:`audit.contract.files.read_bounded`), signed in memory and replaced with
    :func:`reports.atomic.atomic_write_bytes`, so an interrupted run leaves the
    unsigned file, never a half-written or wrongly signed one.

    Args:
        pdf_path: The PDF to sign.
        key_dir: A key folder (see :mod:`reports.keys`) or already loaded keys.
        passphrase: Passphrase of the key folder's private keys.

    Returns:
        ``pdf_path``.

    Raises:
        SigningError: The keys cannot be used, or the file is missing, not a regular file, over
            :data:`MAX_PDF_BYTES` or not a PDF.
    """
    keys = key_dir if isinstance(key_dir, SigningKeys) else load_signing_keys(key_dir, passphrase)
    path = Path(pdf_path)
    data = read_bounded(path, limit=MAX_PDF_BYTES, what="PDF", error=SigningError)
    return atomic_write_bytes(path, sign_pdf_bytes(data, keys))
