"""Every configuration key is documented in docs/configuration.md, in its table's
section (transport routes: in the `transports` row)."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_args, get_type_hints

from mailyard.config import _NOT_IN_FILE, Config

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def sections() -> dict[str, str]:
    """Section title ('' for the top level, 'smtpd' for `[smtpd]`) -> its text."""
    out: dict[str, str] = {}
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        m = re.fullmatch(r"`\[([a-z0-9_.]+)\]`", title.strip())
        out["" if title.strip() == "Top level" else (m.group(1) if m else title)] = body
    return out


def keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) for every key a file may set."""
    out: list[tuple[str, str]] = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in _NOT_IN_FILE:
            continue
        tp = hints[f.name]
        if is_dataclass(tp):
            out += keys(tp, f.name)
            continue
        out.append((prefix, f.name))
        item = get_args(tp)[0] if get_args(tp) else None
        if item is not None and is_dataclass(item):  # a list of tables, e.g. transports
            out += [(f"{prefix}:{f.name}", sub) for _, sub in keys(item, f.name)]
    return out


def test_every_key_is_documented() -> None:
    docs = sections()
    missing = []
    for section, key in keys(Config):
        if ":" in section:  # a field of a list-of-tables entry: in its parent's row
            table, parent = section.split(":")
            row = next((line for line in docs.get(table, "").splitlines()
                        if line.startswith(f"| `{parent}`")), "")
            if f"{key} =" not in row and f"`{key}`" not in row:
                missing.append(f"{table}.{parent}[].{key}")
        elif f"`{key}`" not in docs.get(section, ""):
            missing.append(f"{section}.{key}" if section else key)
    assert not missing, f"not in docs/configuration.md: {missing}"
