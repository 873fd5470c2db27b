"""Property-based fuzzing of the signing inputs: key folders, trust files, ``CVAUDIT_TRUST``.

A key folder made by ``keygen`` has one file replaced by random bytes, a mutated PEM (bytes
changed, hostile fragments spliced in), another file's content, nothing, a folder, or given a wrong
mode (group/world readable private keys); :func:`load_signing_keys` (what ``run --sign`` loads)
and :func:`load_anchors` (what ``verify --key`` loads) either load it or raise one well-formed
:class:`CvauditError` within the bounds of :func:`fuzz_kit.check`. Trust files (``--trust``)
are random bytes, fingerprint lines with hostile text, and mutated PEM bundles; ``CVAUDIT_TRUST``
and ``CVAUDIT_KEY_PASSPHRASE`` get hostile strings. ``CVAUDIT_FUZZ=smoke|ci|long`` sets the
number of examples.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fuzz_kit import HOSTILE_BYTES, HOSTILE_TEXT, check, check_message, fuzz_settings, mutations
from hypothesis import given
from hypothesis import strategies as st

from reports.keys import (
    ATTESTATION_KEY,
    ATTESTATION_PUB,
    CA_CERT,
    PASSPHRASE_ENV,
    PDF_CERT,
    PDF_KEY,
    PDF_PUB,
    PUBLIC_DIR,
    TRUST_FILE,
    SigningError,
    keygen,
    load_signing_keys,
    passphrase_from_env,
)
from reports.trust import load_anchors

KEY_FILES = [
    PDF_KEY,
    PDF_CERT,
    PDF_PUB,
    ATTESTATION_KEY,
    ATTESTATION_PUB,
    CA_CERT,
    f"{PUBLIC_DIR}/{CA_CERT}",
    f"{PUBLIC_DIR}/{PDF_CERT}",
    f"{PUBLIC_DIR}/{ATTESTATION_PUB}",
    f"{PUBLIC_DIR}/{TRUST_FILE}",
]
PUBLIC_TRUST = f"{PUBLIC_DIR}/{TRUST_FILE}"
MODES = [0o600, 0o400, 0o640, 0o644, 0o666, 0o777, 0o000]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys") / "keys"
    keygen(folder)
    return folder


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-signing")


def _fresh_copy(template: Path, scratch: Path) -> Path:
    folder = scratch / "keys"
    if folder.exists():
        for path in folder.rglob("*"):  # a mode 000 folder would stop rmtree for a non-root user
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o700)
        shutil.rmtree(folder)
    shutil.copytree(template, folder)
    return folder


@st.composite
def damage(draw, template_files: dict[str, bytes]):
    """One or two (file, action, argument) changes to a key folder."""
    changes = []
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(KEY_FILES))
        action = draw(st.sampled_from(["bytes", "mutate", "swap", "empty", "delete", "folder", "mode", "truncate"]))
        if action == "bytes":
            argument = draw(st.one_of(st.binary(max_size=400), st.sampled_from(HOSTILE_BYTES)))
        elif action == "mutate":
            argument = draw(mutations(template_files[name]))
        elif action == "swap":
            argument = template_files[draw(st.sampled_from(KEY_FILES))]
        elif action == "mode":
            argument = draw(st.sampled_from(MODES))
        elif action == "truncate":
            argument = template_files[name][: draw(st.integers(0, len(template_files[name])))]
        else:
            argument = None
        changes.append((name, action, argument))
    return changes


def _apply(folder: Path, changes) -> None:
    for name, action, argument in changes:
        path = folder / name
        if path.is_dir():
            continue
        if action in ("bytes", "mutate", "swap", "truncate"):
            path.write_bytes(argument)
        elif action == "empty":
            path.write_bytes(b"")
        elif action == "delete":
            path.unlink(missing_ok=True)
        elif action == "folder":
            path.unlink(missing_ok=True)
            path.mkdir()
        elif action == "mode" and path.exists():
            path.chmod(argument)


def _template_files() -> dict[str, bytes]:
    # Hypothesis needs the strategy at import time: read the template made by a throwaway keygen.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        keygen(Path(tmp) / "k")
        return {name: (Path(tmp) / "k" / name).read_bytes() for name in KEY_FILES}


TEMPLATE_FILES = _template_files()


@fuzz_settings(0.1)
@given(changes=damage(TEMPLATE_FILES), passphrase=st.sampled_from([None, b"wrong", "é"]))
def test_key_folder(template, scratch, changes, passphrase):
    folder = _fresh_copy(template, scratch)
    _apply(folder, changes)
    check(lambda: load_signing_keys(folder, passphrase))
    check(lambda: load_anchors(key_dirs=[folder]))
    check(lambda: load_anchors(key_dirs=[folder / PUBLIC_DIR]))


def test_template_key_folder_loads(template, scratch):
    """Undamaged, the copied folder loads (so the damage, not the copy, is what the fuzzer tests)."""
    folder = _fresh_copy(template, scratch)
    assert load_signing_keys(folder).key_dir == folder
    assert load_anchors(key_dirs=[folder]).sources


FINGERPRINT = "sha256:" + "ab" * 32
TRUST_LINES = st.lists(
    st.one_of(
        st.just(FINGERPRINT),
        st.just("SHA256:" + ":".join(["AB"] * 32)),
        st.just("sha256 Fingerprint=" + ":".join(["CD"] * 32)),
        st.just("# comment"),
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=40),
    ),
    max_size=5,
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@fuzz_settings(0.1)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        TRUST_LINES,
        mutations(TEMPLATE_FILES[PUBLIC_TRUST]),
        mutations(TEMPLATE_FILES[PDF_CERT] + TEMPLATE_FILES[ATTESTATION_PUB]),
        mutations(TEMPLATE_FILES[CA_CERT]),
        st.sampled_from([TEMPLATE_FILES[PDF_KEY], b"\xef\xbb\xbf" + FINGERPRINT.encode(), b"x" * 2_000_000]),
    )
)
def test_trust_file(scratch, data):
    path = scratch / "trust.txt"
    path.write_bytes(data)
    check(lambda: load_anchors(trust_files=[path]))


KNOWN_TRUST_ENV: list = []  # a name too long for the system was an OSError; now one SigningError line
KNOWN_ENV: list = []  # a passphrase that is not UTF-8 was a UnicodeEncodeError; now its bytes


@fuzz_settings(0.05)
@given(value=st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20)))
def test_environment_values(scratch, value):
    """``CVAUDIT_TRUST`` entries and the key passphrase from the environment: anchors or one error."""
    check(lambda: load_anchors(env=value.replace("\x00", "")), known=KNOWN_TRUST_ENV)
    check(lambda: load_anchors(env=str(scratch / "missing") + os.pathsep + value.replace("\x00", "")))
    saved = os.environ.get(PASSPHRASE_ENV)
    try:
        os.environb[PASSPHRASE_ENV.encode()] = value.replace("\x00", "").encode("utf-8", "surrogatepass") or b"x"
        check(passphrase_from_env, known=KNOWN_ENV)
    finally:
        if saved is None:
            os.environ.pop(PASSPHRASE_ENV, None)
        else:
            os.environ[PASSPHRASE_ENV] = saved


def test_passphrase_not_utf8_regression(monkeypatch):
    monkeypatch.setitem(os.environb, PASSPHRASE_ENV.encode(), b"\xff")
    check(passphrase_from_env)
    assert passphrase_from_env() == b"\xff"  # the bytes the key was encrypted with, not a crash


def _damaged_name(pem: bytes) -> bytes:
    """``pem`` with the first byte of its signer's name set to 0xFF (not UTF-8 in a UTF8String)."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = bytearray(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
    der[der.index(b"cvaudit report signer")] = 0xFF
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)) + b"-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(("name", "expected"), [(CA_CERT, "cannot be parsed"), (PDF_CERT, "is not issued by")])
def test_certificate_with_a_damaged_name_regression(template, scratch, name, expected):
    """Found by test_key_folder (long profile): a certificate loads (cryptography parses names on
    first use), then its issuer or subject raised ValueError inside check_chain; fixed in
    reports/certificates.py: the chain is broken, one SigningError line."""
    folder = _fresh_copy(template, scratch)
    (folder / name).write_bytes(_damaged_name((folder / name).read_bytes()))
    with pytest.raises(SigningError, match=expected) as caught:
        load_signing_keys(folder)
    check_message(caught.value)
