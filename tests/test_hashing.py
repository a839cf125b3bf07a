"""Hashes against hashlib on the same bytes, computed independently."""

from __future__ import annotations

import hashlib
import os
import random
import struct

import pytest
import xxhash

from hub.core.errors import InvalidFileError
from hub.core.files import DurableWriter
from hub.core.hashing import FileStat, Hasher, autov3_of, hash_file


def _reference(data: bytes) -> dict[str, str | None]:
    sha = hashlib.sha256(data).hexdigest()
    autov3 = None
    if len(data) >= 9 and data[8:9] == b"{":
        (n,) = struct.unpack("<Q", data[:8])
        autov3 = hashlib.sha256(data[8 + n :]).hexdigest()
    return {
        "xxh3_128": xxhash.xxh3_128(data).hexdigest(),
        "sha256": sha,
        "autov1": hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
        if len(data) >= 2 << 20
        else None,
        "autov2": sha[:10],
        "autov3": autov3,
    }


def test_safetensors_file_hashes(models):
    path = models["kohya-sd1"]
    data = path.read_bytes()
    hashes, stat = hash_file(path)
    assert hashes.as_dict() == _reference(data)
    assert stat.size == len(data)


def test_large_checkpoint_hashes_including_autov1(models):
    path = models["mini-sd1"]
    hashes, _ = hash_file(path)
    assert hashes.as_dict() == _reference(path.read_bytes())
    assert hashes.autov1 is not None


@pytest.mark.parametrize("size", [0, 5, 9, (8 << 20) + 3, (17 << 20) + 1, (45 << 20) + 7])
def test_arbitrary_bytes_and_chunk_boundaries(tmp_path, size):
    data = random.Random(size).randbytes(size)  # seeded: byte 8 is never "{" (no header)
    assert data[8:9] != b"{"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert hash_file(path)[0].as_dict() == _reference(data)


def test_autov3_header_spanning_chunks():
    """A header that ends in a later chunk than the one it starts in."""
    header = b'{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}' + b" " * 100
    data = struct.pack("<Q", len(header)) + header + b"xyz"
    hasher = Hasher()
    for i in range(0, len(data), 7):
        hasher.update(data[i : i + 7])
    assert hasher.finish().autov3 == hashlib.sha256(b"xyz").hexdigest()


def test_autov3_is_decided_from_the_whole_header(models):
    """The decision sees the header's JSON bytes, even when they arrive a few at a time; a
    no leaves AutoV3 out and every other hash as it is."""
    data = models["kohya-sd1"].read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for answer in (True, False):
        seen = []
        hasher = Hasher(autov3=lambda raw, a=answer, s=seen: s.append(raw) or a)
        for i in range(0, len(data), 1000):
            hasher.update(data[i : i + 1000])
        expected = _reference(data) | ({} if answer else {"autov3": None})
        assert hasher.finish().as_dict() == expected
        assert seen == [data[8 : 8 + n]]


def test_autov3_later_equals_the_pass(tmp_path, models):
    path = models["mini-sd1"]
    hashes, stat = hash_file(path, autov3=False)
    assert hashes.autov3 is None
    assert hashes.as_dict() | {"autov3": None} == _reference(path.read_bytes()) | {"autov3": None}
    assert autov3_of(path, stat) == _reference(path.read_bytes())["autov3"]
    other = tmp_path / "blob.bin"
    other.write_bytes(os.urandom(1000))
    assert autov3_of(other) is None
    with pytest.raises(InvalidFileError, match="changed since"):
        autov3_of(path, FileStat(stat.size, stat.mtime_ns + 1, stat.inode))


def test_copy_sink_receives_identical_bytes(tmp_path, models):
    import io

    sink = io.BytesIO()
    hash_file(models["emb-sdxl"], sink=sink)
    assert sink.getvalue() == models["emb-sdxl"].read_bytes()


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        hash_file(tmp_path / "nope")


def test_changed_while_reading_is_refused(tmp_path):
    path = tmp_path / "grow.bin"
    path.write_bytes(b"a" * (9 << 20))

    grown = []

    def grow(_n: int) -> None:
        if not grown:
            grown.append(1)
            with path.open("r+b") as fh:  # same size, new bytes and mtime
                fh.seek(0)
                fh.write(b"b")
            os.utime(path, ns=(1, 1))

    with pytest.raises(InvalidFileError, match="changed while"):
        hash_file(path, progress=grow)


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("start", [0, 8192, 12_345])
def test_durable_writer_writes_every_byte(tmp_path, monkeypatch, start, direct):
    """Small buffer and windows, so that every path runs: a resume from an unaligned
    offset, blocks written from the aligned buffer, the padded tail cut back, or (through
    the cache) reservation, writeback and its waits."""
    monkeypatch.setattr(DurableWriter, "BUFFER", 16384)
    monkeypatch.setattr(DurableWriter, "WINDOW", 4096)
    if not direct:
        monkeypatch.setattr(DurableWriter, "_try_direct", lambda self, start: False)
    head, body = os.urandom(start + 100), os.urandom(300_001)
    path = tmp_path / "out.bin"
    path.write_bytes(head)  # the 100 bytes after ``start`` are cut
    with DurableWriter(path, start, len(body)) as writer:
        for i in range(0, len(body), 7_919):
            assert writer.write(body[i : i + 7_919]) == len(body[i : i + 7_919])
        writer.sync()
    assert path.stat().st_size == start + len(body)  # the reservation keeps the length
    expected = hashlib.sha256(head[:start] + body).hexdigest()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_durable_writer_left_early_keeps_whole_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(DurableWriter, "BUFFER", 16384)
    body = os.urandom(50_000)
    path = tmp_path / "out.bin"
    with DurableWriter(path) as writer:
        writer.write(body)  # no sync: an interrupted download
    kept = path.read_bytes()
    assert body.startswith(kept)
    assert len(kept) >= len(body) - DurableWriter.BLOCK


def test_durable_writer_falls_back_when_direct_writes_are_refused(tmp_path, monkeypatch):
    """A file system that takes the O_DIRECT flag and then refuses the writes (EINVAL)."""
    import errno
    import fcntl

    real = os.pwrite
    refused = []

    def pwrite(fd, data, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(DurableWriter, "BUFFER", 16384)
    body = os.urandom(100_003)
    path = tmp_path / "out.bin"
    with DurableWriter(path, 0, len(body)) as writer:
        for i in range(0, len(body), 5_000):
            writer.write(body[i : i + 5_000])
        writer.sync()
    assert refused == [0]
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(body).digest()


def test_durable_writer_without_pwrite(tmp_path, monkeypatch):
    """Platforms without ``os.pwrite`` (Windows) seek and write."""
    monkeypatch.delattr(os, "pwrite")
    monkeypatch.setattr(DurableWriter, "_try_direct", lambda self, start: False)
    head, body = os.urandom(777), os.urandom(50_001)
    path = tmp_path / "out.bin"
    path.write_bytes(head)
    with DurableWriter(path, len(head)) as writer:
        writer.write(body[:20_000])
        writer.write(body[20_000:])
        writer.sync()
    assert path.read_bytes() == head + body


def test_small_file_hashes_equal_the_pipelined_ones(tmp_path):
    """hash_small_file (one read, no worker threads) gives hash_file's values: a safetensors
    add-on of 3 MiB (AutoV1 and AutoV3 present) and a tiny non-safetensors file."""
    from hub.core.hashing import hash_small_file

    rng = random.Random(7)
    header = b'{"w":{"dtype":"U8","shape":[3145728],"data_offsets":[0,3145728]}}'
    body = rng.randbytes(3 << 20)
    st = tmp_path / "a.safetensors"
    st.write_bytes(struct.pack("<Q", len(header)) + header + body)
    tiny = tmp_path / "b.pt"
    tiny.write_bytes(rng.randbytes(100))
    for path in (st, tiny):
        small, small_stat = hash_small_file(path)
        piped, piped_stat = hash_file(path)
        assert small == piped and small_stat == piped_stat
    small, _ = hash_small_file(st)
    assert small.sha256 == hashlib.sha256(st.read_bytes()).hexdigest()
    assert small.autov3 == hashlib.sha256(body).hexdigest()
