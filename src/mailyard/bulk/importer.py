"""Reading contacts from CSV or JSON lines, with limits for hostile files.

Rows come out one at a time (a 100,000-row file is never held in memory) as an
:class:`ImportRow` or, for a row that cannot be used, a :class:`RowError` with its line
number and the reason; the import goes on.  A file that cannot be read any further
raises :class:`ImportAborted` with the line where it stopped:

* a physical line longer than ``MAX_LINE`` bytes (a 100 MB cell is refused after
  reading 1 MiB of it, never loaded whole), or a CSV cell over the same limit;
* bytes that are not text in the given encoding (UTF-8 unless told otherwise; a UTF-8
  byte-order mark is skipped);
* a CSV header with more than ``MAX_COLUMNS`` columns, an unnamed or repeated column,
  or no column that holds the address.

CSV columns are mapped by their header: ``email`` (also ``e-mail``, ``email address``,
``address``, ``mail``) is the address, ``name`` (also ``full name``, ``display
name``) the name; every other column becomes an attribute named as its header.  The
delimiter is whichever of ``,`` ``;`` TAB occurs most in the header line (spreadsheets
in many locales write ``;``).  A JSON line is an object with ``email`` or ``address``,
optionally ``name`` and an ``attributes`` object; its other members are attributes too.
"""

from __future__ import annotations

import codecs
import csv
import enum
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from mailyard.bulk.addresses import InvalidAddress, normalise_address

MAX_LINE = 1_048_576  # bytes of one physical line (and of one CSV cell)
MAX_COLUMNS = 200
MAX_ATTRIBUTES = 16_384  # bytes of a contact's attributes as JSON
#: Lists and objects nested in one attribute value (or in the variables of an API
#: message): deeper ones could be stored but not given back (the API's JSON encoder
#: stops at a depth of about 250).
MAX_ATTRIBUTE_DEPTH = 32
MAX_NAME = 256  # characters

ADDRESS_COLUMNS = ("email", "e_mail", "email_address", "address", "mail")
NAME_COLUMNS = ("name", "full_name", "fullname", "display_name")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ImportFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class ImportRow:
    line: int
    address: str  # normalised
    name: str | None  # None: not given (an existing name is kept)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


class ImportAborted(Exception):
    """The file cannot be read past ``line``."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class _Lines:
    """Decoded physical lines of a binary stream, each at most MAX_LINE bytes; the
    number of the last line given out is ``number``."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self.stream = stream
        self.encoding = encoding
        self.number = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.stream.readline(MAX_LINE + 1)
            if not raw:
                return
            self.number += 1
            self.bytes_read += len(raw)
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                raise ImportAborted(self.number, f"the line is longer than {MAX_LINE} bytes; "
                                    "import stopped here")
            if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise ImportAborted(
                    self.number, f"not valid {self.encoding} text (byte {exc.start + 1} of "
                    f"the line); save the file as UTF-8 or give its encoding "
                    "(--encoding, or the charset of the request's Content-Type)") from None


def read_rows(stream: IO[bytes], fmt: ImportFormat, encoding: str = "utf-8",
              lines: _Lines | None = None) -> Iterator[ImportRow | RowError]:
    """The rows of ``stream``; raises ImportAborted (and LookupError for an unknown
    encoding)."""
    codecs.lookup(encoding)
    source = lines or _Lines(stream, encoding)
    if fmt is ImportFormat.CSV:
        return _csv_rows(source)
    return _jsonl_rows(source)


def line_reader(stream: IO[bytes], encoding: str = "utf-8") -> _Lines:
    """A line source whose ``bytes_read`` a progress bar can follow."""
    return _Lines(stream, encoding)


def _column_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def _delimiter(first_line: str) -> str:
    return max(",;\t", key=first_line.count)


def _csv_rows(lines: _Lines) -> Iterator[ImportRow | RowError]:
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return
    delimiter = _delimiter(first)

    def rest() -> Iterator[str]:
        yield first
        yield from it

    csv.field_size_limit(MAX_LINE)
    reader = csv.reader(rest(), delimiter=delimiter, strict=False)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ImportAborted(lines.number, f"bad CSV header: {exc}") from None
    address_at, name_at, attributes = _map_header(header)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportAborted(lines.number, f"bad CSV: {exc}; import stopped here") from None
        line = lines.number
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            yield RowError(line, f"{len(cells)} fields, the header has {len(header)}")
            continue
        cells += [""] * (len(header) - len(cells))
        attrs = {name: cells[i] for i, name in attributes if cells[i] != ""}
        name = cells[name_at] if name_at is not None else None
        yield _row(line, cells[address_at], name, attrs)


def _map_header(header: list[str]) -> tuple[int, int | None, list[tuple[int, str]]]:
    if len(header) > MAX_COLUMNS:
        raise ImportAborted(1, f"the header has {len(header)} columns; at most {MAX_COLUMNS}")
    keys = [_column_key(h) for h in header]
    for i, h in enumerate(header):
        if not h.strip():
            raise ImportAborted(1, f"column {i + 1} has no name in the header")
        if _CONTROL.search(h):
            raise ImportAborted(1, f"column {i + 1}'s name has control characters")
    duplicates = sorted({h.strip() for h, k in zip(header, keys, strict=True)
                         if keys.count(k) > 1})
    if duplicates:
        raise ImportAborted(1, f"columns named more than once: {', '.join(duplicates)}")
    address_at = next((keys.index(k) for k in ADDRESS_COLUMNS if k in keys), None)
    if address_at is None:
        raise ImportAborted(1, "no address column: name one 'email' (or 'address')")
    name_at = next((keys.index(k) for k in NAME_COLUMNS if k in keys), None)
    attributes = [(i, h.strip()) for i, h in enumerate(header) if i not in (address_at, name_at)]
    return address_at, name_at, attributes


def _jsonl_rows(lines: _Lines) -> Iterator[ImportRow | RowError]:
    for text in lines:
        line = lines.number
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            yield RowError(line, f"not JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield RowError(line, "not a JSON object")
            continue
        address = obj.pop("email", None)
        if address is None:
            address = obj.pop("address", None)
        name = obj.pop("name", None)
        attrs = obj.pop("attributes", {})
        if not isinstance(address, str):
            yield RowError(line, "no address ('email' or 'address' as a string)")
            continue
        if name is not None and not isinstance(name, str):
            yield RowError(line, "'name' is not a string")
            continue
        if not isinstance(attrs, dict):
            yield RowError(line, "'attributes' is not an object")
            continue
        yield _row(line, address, name, {**obj, **attrs})


def _row(line: int, address: str, name: str | None,
         attributes: dict[str, Any]) -> ImportRow | RowError:
    try:
        key = normalise_address(address)
    except InvalidAddress as exc:
        return RowError(line, str(exc))
    problem = check_fields(name, attributes)
    if problem:
        return RowError(line, problem)
    return ImportRow(line, key, name.strip() if name is not None else None, attributes)


def nesting(value: object) -> int:
    """How deep lists and objects nest in ``value`` (the attributes object itself is
    level 0); without recursion, whatever the depth."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else ())
        for child in children:
            if isinstance(child, (dict, list)):
                deepest = max(deepest, depth + 1)
                if deepest > MAX_ATTRIBUTE_DEPTH:
                    return deepest
                stack.append((child, depth + 1))
    return deepest


def check_fields(name: str | None, attributes: dict[str, Any]) -> str | None:
    """Why a name or attributes cannot be stored, or None.  Control characters are
    refused: a name goes into the To: field of every mail (no CR/LF header
    injection), an attribute into templates."""
    if name is not None:
        if len(name) > MAX_NAME:
            return f"the name is longer than {MAX_NAME} characters"
        if _CONTROL.search(name):
            return "the name contains control characters (line breaks, escapes)"
    size, flat = 0, True
    for k, v in attributes.items():
        if not isinstance(k, str) or not k or _CONTROL.search(k):
            return "an attribute name is empty or contains control characters"
        if isinstance(v, str):
            size += len(k) + len(v)
        else:
            flat = False
    if not flat and nesting(attributes) > MAX_ATTRIBUTE_DEPTH:
        return f"the attributes nest lists and objects deeper than {MAX_ATTRIBUTE_DEPTH} levels"
    if not flat or size * 6 > MAX_ATTRIBUTES:
        try:  # JSON escapes may make a character six bytes: measure when it might count
            text = json.dumps(attributes, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            return "the attributes cannot be stored as JSON"
        if len(text.encode("utf-8")) > MAX_ATTRIBUTES:
            return f"the attributes are larger than {MAX_ATTRIBUTES} bytes as JSON"
    return None
