"""audit.contract.files: every user file is checked on its descriptor and read with a bound."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from audit.contract.errors import CvauditError
from audit.contract.files import open_bounded, read_bounded


class _Err(CvauditError):
    pass


def _read(path, limit=100):
    return read_bounded(path, limit=limit, what="config file", error=_Err)


def test_reads_a_regular_file_within_the_limit(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"x" * 100)
    assert _read(p) == b"x" * 100


def test_refuses_a_file_over_the_limit_before_reading(tmp_path):
    p = tmp_path / "big.yaml"
    with open(p, "wb") as fh:  # a sparse 1 GiB file: reading it would cost 1 GiB
        fh.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(_Err, match=r"big\.yaml: config file is 1024\.0 MiB; at most 100 bytes are read"):
        _read(p)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was read


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_refuses_character_devices(path, kind):
    if not os.path.exists(path):
        pytest.skip(f"{path} not on this system")
    with pytest.raises(_Err, match=f"is {kind}; expected config file"):
        _read(path)


def test_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(_Err, match=r"is a FIFO \(named pipe\)"):
        _read(fifo)


def test_refuses_a_socket_and_a_folder(tmp_path):
    sock_path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(_Err, match="is a socket"):
            _read(sock_path)
    with pytest.raises(_Err, match="is a folder"):
        _read(tmp_path)


def test_missing_and_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(_Err, match="config file not found"):
        _read(tmp_path / "nope.yaml")
    p = tmp_path / "secret.yaml"
    p.write_text("a: 1")
    p.chmod(0)
    if os.access(p, os.R_OK):  # running as root
        pytest.skip("root reads any file")
    with pytest.raises(_Err, match="cannot read config file"):
        _read(p)


def test_open_bounded_streams_a_checked_file(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"a,b\n1,2\n")
    with open_bounded(p, limit=100, what="manifest", error=_Err) as fh:
        assert fh.readline(10) == b"a,b\n"
    with pytest.raises(_Err, match="manifest is 8 bytes; at most 4 bytes"):
        open_bounded(p, limit=4, what="manifest", error=_Err)


def test_a_generous_limit_costs_the_file_not_the_limit(tmp_path):
    """read(n) allocates n bytes up front: reading a 3-byte file under a 1 GiB limit must not allocate 1 GiB."""
    import tracemalloc

    p = tmp_path / "small.json"
    p.write_bytes(b"abc")
    tracemalloc.start()
    try:
        assert read_bounded(p, limit=1 << 30, what="results file", error=_Err) == b"abc"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"reading 3 bytes allocated {peak} bytes"


def test_a_file_that_grows_within_the_limit_is_read_whole(tmp_path, monkeypatch):
    import audit.contract.files as files

    p = tmp_path / "grows.yaml"
    p.write_bytes(b"a" * 10)
    real = files._open_regular

    def stale_size(path, what, limit, error):  # fstat saw 4 bytes; the file holds 10 by the time it is read
        fd, _ = real(path, what, 1 << 20, error)
        return fd, 4

    monkeypatch.setattr(files, "_open_regular", stale_size)
    assert _read(p, limit=100) == b"a" * 10
    with pytest.raises(_Err, match="grew past 8 bytes while it was read"):
        _read(p, limit=8)


def test_require_regular_refuses_what_a_library_would_hang_on(tmp_path):
    from audit.contract.files import require_regular

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(_Err, match=r"model\.pt: is a FIFO \(named pipe\); expected model file"):
        require_regular(fifo, what="model file", error=_Err)
    with pytest.raises(_Err, match="is a character device"):
        require_regular("/dev/zero", what="model file", error=_Err)
    with pytest.raises(_Err, match="model file not found"):
        require_regular(tmp_path / "nope.pt", what="model file", error=_Err)
    real = tmp_path / "real.pt"
    real.write_bytes(b"x")
    assert require_regular(real, what="model file", error=_Err) == real


def test_a_recipe_that_is_a_device_is_one_line():
    from stressors import StressorError
    from stressors.recipe import load

    with pytest.raises(StressorError, match="/dev/zero: is a character device; expected recipe file"):
        load("/dev/zero")
