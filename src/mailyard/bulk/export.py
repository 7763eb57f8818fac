"""Contacts as CSV, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR is a formula to Excel,
LibreOffice and Google Sheets ("CSV injection": ``=HYPERLINK(...)`` in a name
field runs when the operator opens the export).  Such a cell is written with a
leading apostrophe, which every spreadsheet shows as text and hides (OWASP's advice).
Import does not undo it: the apostrophe is then part of the value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import IO, Any

from mailyard.bulk.model import Contact

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_COLUMNS = ("email", "name", "status", "created")


def escape_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_cell(value)
    return escape_cell(json.dumps(value, ensure_ascii=False))


def write_csv(out: IO[str], contacts: Iterable[Contact], attribute_names: Sequence[str]) -> int:
    """Write the header and one row per contact; the number of rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([escape_cell(c) for c in (*FIXED_COLUMNS, *attribute_names)])
    count = 0
    for c in contacts:
        writer.writerow([escape_cell(c.address), escape_cell(c.name), c.status.value,
                         f"{c.created:.0f}",
                         *(_cell(c.attributes.get(a)) for a in attribute_names)])
        count += 1
    return count
