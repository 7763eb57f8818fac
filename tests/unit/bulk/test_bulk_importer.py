"""Reading contacts from CSV and JSON lines, hostile files included: the wrong
encoding, 10,000 columns, a 100 MB cell (read no further than the cap)."""

from __future__ import annotations

import io

import pytest

from mailyard.bulk.importer import (
    MAX_LINE,
    ImportAborted,
    ImportFormat,
    ImportRow,
    RowError,
    read_rows,
)


def rows(data: bytes, fmt: ImportFormat = ImportFormat.CSV,
         encoding: str = "utf-8") -> list[ImportRow | RowError]:
    return list(read_rows(io.BytesIO(data), fmt, encoding))


def test_columns_are_mapped_by_header() -> None:
    out = rows(b"\xef\xbb\xbfName,E-Mail,Plan,Country\r\nAnn,Ann@Example.ORG,pro,DE\r\n")
    assert out == [ImportRow(2, "ann@example.org", "Ann", {"Plan": "pro", "Country": "DE"})]


def test_semicolon_delimiter_quoted_newline_and_line_numbers() -> None:
    data = b'email;note\na@example.org;"two\nlines"\nb@example.org;x\n'
    out = rows(data)
    assert [r.line for r in out] == [3, 4]
    assert isinstance(out[0], ImportRow) and out[0].attributes == {"note": "two\nlines"}


def test_invalid_rows_are_reported_and_reading_goes_on() -> None:
    data = (b"email,name\nnot-an-address,X\nc@example.org,\"bad\rname\"\n"
            b"d@example.org,D,extra\n\ne@b\xc3\xbccher.example,E\n")
    out = rows(data)
    errors = [r for r in out if isinstance(r, RowError)]
    assert [e.line for e in errors] == [2, 3, 4]
    assert "control characters" in errors[1].reason and "3 fields" in errors[2].reason
    good = [r for r in out if isinstance(r, ImportRow)]
    assert [(g.line, g.address) for g in good] == [(6, "e@xn--bcher-kva.example")]


def test_no_address_column() -> None:
    with pytest.raises(ImportAborted, match="no address column"):
        rows(b"name,plan\nAnn,pro\n")


def test_ten_thousand_columns() -> None:
    header = ",".join(f"c{i}" for i in range(10_000)).encode()
    with pytest.raises(ImportAborted) as info:
        rows(b"email," + header + b"\n")
    assert info.value.line == 1 and "10001 columns" in info.value.message


def test_duplicate_columns() -> None:
    with pytest.raises(ImportAborted, match="more than once: Email, email"):
        rows(b"email,Email\n")


def test_wrong_encoding_names_the_line() -> None:
    data = "email,name\na@example.org,Jürgen\n".encode("latin-1")
    with pytest.raises(ImportAborted) as info:
        rows(data)
    assert info.value.line == 2 and "not valid utf-8" in info.value.message
    assert rows(data, encoding="latin-1")[0] == ImportRow(2, "a@example.org", "Jürgen", {})


class Endless(io.RawIOBase):
    """A 100 MB cell that is never materialised: counts what the reader takes."""

    def __init__(self, prefix: bytes, size: int) -> None:
        self.prefix, self.left, self.taken = prefix, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
        else:
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
        self.taken += n
        return n


def test_hundred_megabyte_cell_is_refused_without_reading_it() -> None:
    source = Endless(b"email,name\na@example.org,", 100 * 1024 * 1024)
    with pytest.raises(ImportAborted) as info:
        list(read_rows(io.BufferedReader(source), ImportFormat.CSV))
    assert info.value.line == 2 and "longer than" in info.value.message
    assert source.taken < 2 * MAX_LINE


def test_jsonl() -> None:
    data = (b'{"email": "a@example.org", "name": "A", "plan": "pro", '
            b'"attributes": {"n": 3}}\n[1]\n{"name": "no address"}\nnot json\n'
            b'{"address": "b@example.org", "attributes": "x"}\n')
    out = rows(data, ImportFormat.JSONL)
    assert out[0] == ImportRow(1, "a@example.org", "A", {"plan": "pro", "n": 3})
    assert [(r.line, type(r).__name__) for r in out[1:]] == [
        (2, "RowError"), (3, "RowError"), (4, "RowError"), (5, "RowError")]


def test_attributes_nested_too_deeply() -> None:
    """32 levels of lists and objects in an attribute are stored; 33 are a row error
    (far below the depth at which the API could no longer give the contact back)."""
    ok = b'{"email": "a@example.org", "deep": ' + b"[" * 32 + b"]" * 32 + b"}\n"
    deep = b'{"email": "b@example.org", "deep": ' + b'{"k": ' * 33 + b"1" + b"}" * 33 + b"}\n"
    out = rows(ok + deep + b'{"email": "c@example.org", "deep": ' + b"[" * 300
               + b"]" * 300 + b"}\n", ImportFormat.JSONL)
    assert isinstance(out[0], ImportRow)
    assert [(r.line, "deeper than 32" in r.reason) for r in out[1:]
            if isinstance(r, RowError)] == [(2, True), (3, True)]


def test_attributes_too_large() -> None:
    data = b'{"email": "a@example.org", "big": "' + b"y" * 20_000 + b'"}\n'
    out = rows(data, ImportFormat.JSONL)
    assert isinstance(out[0], RowError) and "larger than" in out[0].reason
