"""The parsed form of a segment expression: plain frozen values, one class per kind of
condition, so the SQL compiler (and any other backend) matches on types."""

from __future__ import annotations

import enum
from dataclasses import dataclass

Literal = str | int | float | bool


class CompareOp(enum.StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class FieldKind(enum.StrEnum):
    COLUMN = "column"  # a contact column the schema declares (address, name, created...)
    ATTRIBUTE = "attribute"  # a key of the contact's attributes


@dataclass(frozen=True)
class Field:
    kind: FieldKind
    name: str


@dataclass(frozen=True)
class Compare:
    field: Field
    op: CompareOp
    value: Literal


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Contains:
    field: Field
    value: str


@dataclass(frozen=True)
class Exists:
    field: Field


@dataclass(frozen=True)
class Within:
    """A timestamp column within the last ``seconds`` (``created within 7 days``)."""

    field: Field
    seconds: float


@dataclass(frozen=True)
class Engaged:
    """The contact has an event of ``kind`` (opened, clicked), within the last
    ``seconds`` or ever (None)."""

    kind: str
    seconds: float | None


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | In | Contains | Exists | Within | Engaged | And | Or | Not
