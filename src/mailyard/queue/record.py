"""The on-disk record of one queued message.

A message file is self-validating, so a torn or truncated write is recognised without
the index (the Postfix idea: a record that does not end with its end marker was never
committed)::

    header   16 bytes  "MYQR", version (1 byte), flags (1 byte, 0), 2 bytes zero,
                       meta length (uint32), CRC-32 of meta (uint32)
    meta     JSON      {"qid": ..., "created": ..., "envelope": {...}}
    content  bytes     the message exactly as received (CRLF line ends)
    prepend  bytes     optional: header fields computed at commit (a DKIM signature)
    pinfo     8 bytes  only with a prepend: its length (uint32), its CRC-32 (uint32)
    trailer  20 bytes  "MYQT" (no prepend) or "MYQP" (prepend and pinfo precede),
                       content length (uint64), CRC-32 of content (uint32), "END\\n"

All integers are big-endian.  The envelope is complete before DATA, so the header is
written first and the content streams after it; the prepend section and the trailer
are appended at commit.  The file size must equal the sum of the parts exactly.

:func:`open_content` gives a read-only file over the message as it is delivered: the
prepend section (checked against its CRC when the file is opened), then the content.
Reading it to the end also checks the content CRC, so a message that rotted on disk is
noticed by the delivery that reads it instead of being sent damaged.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mailyard.envelope import Envelope
from mailyard.queue.api import StorageError

MAGIC = b"MYQR"
VERSION = 1
HEADER = struct.Struct(">4sBBHII")
TRAILER_MAGIC = b"MYQT"
TRAILER_PREPEND_MAGIC = b"MYQP"  # a prepend section (and its PREPEND_INFO) precedes
PREPEND_INFO = struct.Struct(">II")
MAX_PREPEND = 1024 * 1024
END_MARKER = b"END\n"
TRAILER = struct.Struct(">4sQI4s")
MAX_META = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


class RecordError(StorageError):
    """A message file is not a complete, valid record."""


@dataclass(frozen=True)
class RecordMeta:
    qid: str
    created: float
    envelope: Envelope

    def to_json(self) -> bytes:
        doc = {"qid": self.qid, "created": self.created, "envelope": self.envelope.to_dict()}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> RecordMeta:
        try:
            doc: dict[str, Any] = json.loads(data.decode("utf-8"))
            return cls(str(doc["qid"]), float(doc["created"]),
                       Envelope.from_dict(doc["envelope"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"bad meta: {exc}") from exc


@dataclass(frozen=True)
class RecordInfo:
    """Where a valid record's parts are."""

    meta: RecordMeta
    content_offset: int
    content_length: int
    content_crc: int
    prepend: bytes = b""  # CRC-checked header fields that go before the content

    @property
    def message_length(self) -> int:
        """The message as delivered: prepend plus content."""
        return len(self.prepend) + self.content_length


def encode_header(meta: RecordMeta) -> bytes:
    data = meta.to_json()
    return HEADER.pack(MAGIC, VERSION, 0, 0, len(data), zlib.crc32(data)) + data


def encode_trailer(content_length: int, content_crc: int, prepend: bytes = b"") -> bytes:
    """The end of a record: the prepend section if any, then the trailer."""
    if not prepend:
        return TRAILER.pack(TRAILER_MAGIC, content_length, content_crc, END_MARKER)
    if len(prepend) > MAX_PREPEND:
        raise StorageError(f"prepended header fields too long ({len(prepend)} bytes)")
    return (prepend + PREPEND_INFO.pack(len(prepend), zlib.crc32(prepend))
            + TRAILER.pack(TRAILER_PREPEND_MAGIC, content_length, content_crc, END_MARKER))


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise RecordError(f"truncated {what}")
    return data


def read_info(f: BinaryIO, *, verify_content: bool = False) -> RecordInfo:
    """Check a record's structure (header, meta, trailer, total size) and, optionally, the
    content checksum.  Raises RecordError."""
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    f.seek(0)
    magic, version, flags, reserved, meta_len, meta_crc = HEADER.unpack(
        _read_exact(f, HEADER.size, "header"))
    if magic != MAGIC:
        raise RecordError("bad magic")
    if flags or reserved:
        raise RecordError("unknown header flags")
    if version != VERSION:
        raise RecordError(f"unknown record version {version}")
    if meta_len > MAX_META:
        raise RecordError("meta too long")
    meta_bytes = _read_exact(f, meta_len, "meta")
    if zlib.crc32(meta_bytes) != meta_crc:
        raise RecordError("meta checksum mismatch")
    meta = RecordMeta.from_json(meta_bytes)
    content_offset = HEADER.size + meta_len
    if file_size < content_offset + TRAILER.size:
        raise RecordError("truncated content or trailer")
    f.seek(file_size - TRAILER.size)
    tmagic, length, crc, end = TRAILER.unpack(_read_exact(f, TRAILER.size, "trailer"))
    if tmagic not in (TRAILER_MAGIC, TRAILER_PREPEND_MAGIC) or end != END_MARKER:
        raise RecordError("no trailer")
    prepend = b""
    tail = TRAILER.size
    if tmagic == TRAILER_PREPEND_MAGIC:
        tail += PREPEND_INFO.size
        if file_size < content_offset + tail:
            raise RecordError("truncated prepend section")
        f.seek(file_size - tail)
        plen, pcrc = PREPEND_INFO.unpack(_read_exact(f, PREPEND_INFO.size, "prepend info"))
        if plen > MAX_PREPEND or file_size < content_offset + tail + plen:
            raise RecordError("bad prepend length")
        tail += plen
        f.seek(file_size - tail)
        prepend = _read_exact(f, plen, "prepend")
        if zlib.crc32(prepend) != pcrc:
            raise RecordError("prepend checksum mismatch")
    if content_offset + length + tail != file_size:
        raise RecordError("size mismatch")
    info = RecordInfo(meta, content_offset, length, crc, prepend)
    if verify_content:
        f.seek(content_offset)
        _verify_crc(f, info)
    return info


def _verify_crc(f: BinaryIO, info: RecordInfo) -> None:
    remaining, crc = info.content_length, 0
    while remaining:
        chunk = f.read(min(_CHUNK, remaining))
        if not chunk:
            raise RecordError("truncated content")
        crc = zlib.crc32(chunk, crc)
        remaining -= len(chunk)
    if crc != info.content_crc:
        raise RecordError("content checksum mismatch")


def open_record(path: Path | str) -> BinaryIO:
    """Open a message file for reading, refusing anything but a regular file.

    ``O_NOFOLLOW``: a symbolic link in the spool is damage, not a message to follow.
    ``O_NONBLOCK``: opening a FIFO for reading would otherwise wait for a writer
    forever (and a device could do anything); ``fstat`` then rejects both.
    Raises RecordError for a file that is not a regular one, FileNotFoundError when
    there is no file, OSError otherwise."""
    fd, _ = _open_regular(path)
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """:func:`open_record`'s checks on a bare descriptor (left non-blocking, which a
    regular file ignores), with its ``fstat``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordError("not a regular file (symbolic link)") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RecordError(f"not a regular file (mode {stat.filemode(st.st_mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def validate(path: Path, *, verify_content: bool = False) -> RecordInfo:
    with open_record(path) as f:
        return read_info(f, verify_content=verify_content)


class ContentReader(io.RawIOBase):
    """The message of an open record file (prepend section, then content), read-only
    and seekable within bounds.  A sequential read from the start to the end checks
    the content CRC (the prepend section was checked when the record was opened)."""

    def __init__(self, f: BinaryIO, info: RecordInfo) -> None:
        super().__init__()
        self._f = f
        self._prepend = info.prepend
        self._start = info.content_offset - len(info.prepend)  # file offset of position 0
        self._length = info.message_length
        self._expected_crc = info.content_crc
        self._pos = 0
        self._crc: int | None = 0  # None once a seek makes the running CRC meaningless

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._length - self._pos)
        if want <= 0:
            return 0
        if self._pos < len(self._prepend):
            n = min(want, len(self._prepend) - self._pos)
            view[:n] = self._prepend[self._pos:self._pos + n]
            self._pos += n
            return n
        n = os.preadv(self._f.fileno(), [view[:want]], self._start + self._pos)
        if n == 0:
            raise RecordError("message file shrank while being read")
        if self._crc is not None:
            self._crc = zlib.crc32(view[:n], self._crc)
        self._pos += n
        if self._pos == self._length and self._crc is not None:
            if self._crc != self._expected_crc:
                raise RecordError("content checksum mismatch")
            self._crc = None
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        pos = max(0, base + offset)
        if pos != self._pos:
            self._crc = 0 if pos <= len(self._prepend) else None
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


SMALL_RECORD = 256 * 1024  # records up to this size are read whole by open_content


def open_content(path: Path | str) -> BinaryIO:
    """A buffered, read-only file over the content of the record at ``path``.
    Raises FileNotFoundError if there is no such file, RecordError if it is invalid.

    A record of up to :data:`SMALL_RECORD` bytes (nearly all mail) is read with one
    ``pread`` and checked whole in memory, content CRC included, so a damaged message
    is refused here, before any of it is sent; the meta is checked against its CRC but
    not decoded (delivery has the envelope from the index).  That takes four system
    calls (open, fstat, pread, close) and no file object.  A larger record is
    streamed and its content CRC checked when it is read to the end."""
    fd, st = _open_regular(path)
    if st.st_size <= SMALL_RECORD:
        try:
            data = os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise RecordError("message file shrank while being read")
        return io.BytesIO(message_of(data))
    try:
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        info = read_info(f)
    except BaseException:
        f.close()
        raise
    return io.BufferedReader(ContentReader(f, info), buffer_size=256 * 1024)


def message_of(data: bytes) -> bytes:
    """The message (prepend section, then content) of a whole record in memory, after
    the checks of :func:`read_info` plus the content CRC.  Raises RecordError."""
    size = len(data)
    if size < HEADER.size:
        raise RecordError("truncated header")
    magic, version, flags, reserved, meta_len, meta_crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise RecordError("bad magic")
    if flags or reserved:
        raise RecordError("unknown header flags")
    if version != VERSION:
        raise RecordError(f"unknown record version {version}")
    content_offset = HEADER.size + meta_len
    if size < content_offset:
        raise RecordError("truncated meta")
    view = memoryview(data)
    if zlib.crc32(view[HEADER.size:content_offset]) != meta_crc:
        raise RecordError("meta checksum mismatch")
    if size < content_offset + TRAILER.size:
        raise RecordError("truncated content or trailer")
    tmagic, length, crc, end = TRAILER.unpack_from(data, size - TRAILER.size)
    if tmagic not in (TRAILER_MAGIC, TRAILER_PREPEND_MAGIC) or end != END_MARKER:
        raise RecordError("no trailer")
    prepend = b""
    tail = TRAILER.size
    if tmagic == TRAILER_PREPEND_MAGIC:
        tail += PREPEND_INFO.size
        if size < content_offset + tail:
            raise RecordError("truncated prepend section")
        plen, pcrc = PREPEND_INFO.unpack_from(data, size - tail)
        if plen > MAX_PREPEND or size < content_offset + tail + plen:
            raise RecordError("bad prepend length")
        tail += plen
        prepend = data[size - tail:size - tail + plen]
        if zlib.crc32(prepend) != pcrc:
            raise RecordError("prepend checksum mismatch")
    if content_offset + length + tail != size:
        raise RecordError("size mismatch")
    content = view[content_offset:content_offset + length]
    if zlib.crc32(content) != crc:
        raise RecordError("content checksum mismatch")
    return prepend + content if prepend else bytes(content)
