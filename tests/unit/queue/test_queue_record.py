"""The on-disk record format: round trip, and every kind of damage is detected."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import pytest

from mailyard.queue.record import (
    HEADER,
    TRAILER,
    RecordError,
    RecordMeta,
    encode_header,
    encode_trailer,
    open_content,
    read_info,
    validate,
)
from tests.support.envelopes import make_envelope

CONTENT = b"From: a@example.org\r\nSubject: test\r\n\r\n" + b"line of body text\r\n" * 50


def record_bytes(content: bytes = CONTENT, qid: str = "0000000000000ABCDEFGH") -> bytes:
    meta = RecordMeta(qid, 1_700_000_001.5, make_envelope("x@example.net", "y@example.net"))
    return encode_header(meta) + content + encode_trailer(len(content), zlib.crc32(content))


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "rec"
    path.write_bytes(data)
    return path


def test_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, record_bytes())
    info = validate(path, verify_content=True)
    assert info.meta.qid == "0000000000000ABCDEFGH"
    assert info.meta.created == 1_700_000_001.5
    assert [r.address for r in info.meta.envelope.recipients] == ["x@example.net",
                                                                   "y@example.net"]
    assert info.content_length == len(CONTENT)
    with open_content(path) as f:
        assert f.read() == CONTENT


def test_empty_content(tmp_path: Path) -> None:
    path = write(tmp_path, record_bytes(b""))
    with open_content(path) as f:
        assert f.read() == b""


def test_content_reader_is_limited_and_seekable(tmp_path: Path) -> None:
    path = write(tmp_path, record_bytes())
    with open_content(path) as f:
        assert f.readline() == b"From: a@example.org\r\n"
        lines = list(f)
        assert b"".join(lines) == CONTENT[len(b"From: a@example.org\r\n"):]
        assert f.read() == b""  # the trailer is not part of the content
        f.seek(0)
        assert f.read(5) == b"From:"
        f.seek(-4, io.SEEK_END)
        assert f.read() == b"xt\r\n"


def _offset_classes(data: bytes) -> dict[str, list[int]]:
    meta_len = int.from_bytes(data[8:12], "big")
    content_start = HEADER.size + meta_len
    trailer_start = len(data) - TRAILER.size
    return {
        "header": list(range(0, HEADER.size)),
        "meta": list(range(HEADER.size, content_start, 7)),
        "content": list(range(content_start, trailer_start, 97)) + [trailer_start - 1],
        "trailer": list(range(trailer_start, len(data))),
    }


@pytest.mark.parametrize("part", ["header", "meta", "content", "trailer"])
def test_truncation_anywhere_is_detected(tmp_path: Path, part: str) -> None:
    data = record_bytes()
    for cut in _offset_classes(data)[part]:
        path = write(tmp_path, data[:cut])
        with pytest.raises(RecordError):
            validate(path, verify_content=True)
        # The cheap structural check alone also catches every truncation.
        with pytest.raises(RecordError):
            validate(path, verify_content=False)


@pytest.mark.parametrize("part", ["header", "meta", "content", "trailer"])
def test_flipped_byte_anywhere_is_detected(tmp_path: Path, part: str) -> None:
    data = record_bytes()
    for offset in _offset_classes(data)[part]:
        damaged = bytearray(data)
        damaged[offset] ^= 0x20
        path = write(tmp_path, bytes(damaged))
        with pytest.raises(RecordError):
            validate(path, verify_content=True)


def test_appended_garbage_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, record_bytes() + b"x")
    with pytest.raises(RecordError):
        validate(path)


def test_reading_damaged_content_to_the_end_raises(tmp_path: Path) -> None:
    data = bytearray(record_bytes())
    data[HEADER.size + int.from_bytes(data[8:12], "big") + 3] ^= 1
    path = write(tmp_path, bytes(data))
    # refused when opened (a small record is checked whole) or at the latest when read
    with pytest.raises(RecordError, match="checksum"), open_content(path) as f:
        f.read()


def test_reading_only_the_header_of_a_large_message_works(tmp_path: Path) -> None:
    big = CONTENT + b"y" * (2 * 1024 * 1024)
    data = bytearray(record_bytes(big))
    data[-TRAILER.size - 2] ^= 1  # damage near the end of the content
    path = write(tmp_path, bytes(data))
    with open_content(path) as f:
        assert f.readline().startswith(b"From:")
        with pytest.raises(RecordError, match="checksum"):
            while f.read(65536):
                pass


def test_unknown_version_is_rejected(tmp_path: Path) -> None:
    data = bytearray(record_bytes())
    data[4] = 99
    with pytest.raises(RecordError, match="version"):
        read_info(io.BytesIO(bytes(data)))


def test_not_a_record(tmp_path: Path) -> None:
    with pytest.raises(RecordError):
        validate(write(tmp_path, b"Received: from somewhere\r\n\r\nhello\r\n" * 3))


def test_a_small_record_with_damaged_content_is_refused_when_opened(tmp_path: Path) -> None:
    data = bytearray(record_bytes())
    data[HEADER.size + int.from_bytes(data[8:12], "big") + 3] ^= 1
    path = write(tmp_path, bytes(data))
    with pytest.raises(RecordError, match="content checksum"):
        open_content(path)  # before a byte of it could be sent


def test_a_small_record_with_damaged_meta_is_refused(tmp_path: Path) -> None:
    data = bytearray(record_bytes())
    data[HEADER.size + 2] ^= 1
    path = write(tmp_path, bytes(data))
    with pytest.raises(RecordError, match="meta checksum"):
        open_content(path)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_open_content_refuses_what_is_not_a_regular_file_and_keeps_no_descriptor(
        tmp_path: Path) -> None:
    """A FIFO is refused without waiting for a writer, a symbolic link without being
    followed; neither leaves a descriptor open, nor does a read of a good record."""
    os.mkfifo(tmp_path / "fifo")
    os.symlink(write(tmp_path, record_bytes()), tmp_path / "link")
    before = _open_fds()
    for name in ("fifo", "link"):
        with pytest.raises(RecordError, match="not a regular file"):
            open_content(tmp_path / name)
    with open_content(str(tmp_path / "rec")) as f:  # plain string paths too
        assert f.read() == CONTENT
    assert _open_fds() == before
