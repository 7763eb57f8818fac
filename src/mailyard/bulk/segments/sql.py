"""Segment trees as SQLite conditions over a declared schema.

The SQL text is built only from the schema's identifiers (checked when the schema is
made) and fixed fragments; every value of the expression, attribute names included,
is a bound parameter.  Attributes are read with ``json_extract(attributes, ?)`` and a
path ``$."name"`` as the parameter; a name SQLite's path syntax cannot quote (one with
``"``, ``\\``, a control or a non-ASCII character) is looked up with ``json_each``
instead, again with the name as a parameter.

Meaning, chosen so ``not`` is always the complement of the condition it negates:

* every condition is true or false, never NULL: a missing attribute makes a
  comparison false (so ``not (plan = "pro")`` includes contacts without a plan);
* a string compares only with text values, a number with numbers and with text that
  holds only a number (CSV imports store "42"), ``true``/``false`` with JSON booleans
  and the text "true"/"false";
* ``created`` compares with a number (Unix time) or an ISO date ``"2026-01-01"`` (UTC);
  ``domain`` is the part of the address after ``@``, compared without case;
* ``opened within 30 days`` is an ``EXISTS`` over the events table with the kind and
  the earliest time as parameters.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailyard.bulk.segments.lexer import SegmentError
from mailyard.bulk.segments.tree import (
    And,
    Compare,
    CompareOp,
    Contains,
    Engaged,
    Exists,
    Field,
    FieldKind,
    In,
    Literal,
    Node,
    Not,
    Or,
    Within,
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_KEY = re.compile(r"[ !#-\[\]-~]+")  # printable ASCII without " and \


class ColumnType(enum.StrEnum):
    TEXT = "text"
    TIMESTAMP = "timestamp"  # Unix time as REAL
    DOMAIN = "domain"  # computed: the domain of the address column


def _default_columns() -> dict[str, ColumnType]:
    return {"address": ColumnType.TEXT, "name": ColumnType.TEXT, "status": ColumnType.TEXT,
            "created": ColumnType.TIMESTAMP, "domain": ColumnType.DOMAIN}


@dataclass(frozen=True)
class SegmentSchema:
    """Where contacts and events live.  ``contacts_ref`` is how the surrounding query
    names the contacts table (its name or an alias)."""

    contacts_ref: str = "contacts"
    id_column: str = "id"
    address_column: str = "address"
    attributes_column: str = "attributes"
    columns: Mapping[str, ColumnType] = field(default_factory=_default_columns)
    events_table: str = "events"
    event_contact: str = "contact_id"
    event_kind: str = "kind"
    event_at: str = "at"
    engagement: Mapping[str, str] = field(
        default_factory=lambda: {"opened": "opened", "clicked": "clicked"})

    def __post_init__(self) -> None:
        names = [self.contacts_ref, self.id_column, self.address_column,
                 self.attributes_column, self.events_table, self.event_contact,
                 self.event_kind, self.event_at, *self.columns]
        for name in names:
            if not _IDENT.fullmatch(name):
                raise ValueError(f"not an SQL identifier: {name!r}")


@dataclass(frozen=True)
class SqlCondition:
    """``where`` goes into a query as it is; ``params`` bind its ``?`` in order."""

    where: str
    params: tuple[object, ...]


def compile_segment(node: Node, schema: SegmentSchema, now: float) -> SqlCondition:
    """The condition selecting the contacts that match ``node`` at time ``now``."""
    params: list[object] = []
    where = _Compiler(schema, now, params).node(node)
    return SqlCondition(where, tuple(params))


class _Compiler:
    def __init__(self, schema: SegmentSchema, now: float, params: list[object]) -> None:
        self.schema = schema
        self.now = now
        self.params = params

    def bind(self, *values: object) -> None:
        self.params.extend(values)

    def node(self, node: Node) -> str:
        match node:
            case And(items):
                return "(" + " AND ".join(self.node(i) for i in items) + ")"
            case Or(items):
                return "(" + " OR ".join(self.node(i) for i in items) + ")"
            case Not(item):
                return f"(NOT {self.node(item)})"
            case Engaged():
                return self.engaged(node)
            case Compare(f, op, value):
                return self.compare(f, op, value)
            case In(f, values):
                return self.in_list(f, values)
            case Contains(f, value):
                return self.contains(f, value)
            case Exists(f):
                return self.exists(f)
            case Within(f, seconds):
                return self.within(f, seconds)
        raise AssertionError(f"unknown segment node {node!r}")

    # --- engagement --------------------------------------------------------------
    def engaged(self, node: Engaged) -> str:
        s = self.schema
        kind = s.engagement.get(node.kind)
        if kind is None:
            raise SegmentError(f"unknown engagement {node.kind!r}")
        sql = (f"EXISTS (SELECT 1 FROM {s.events_table} WHERE {s.events_table}."
               f"{s.event_contact} = {s.contacts_ref}.{s.id_column} AND "
               f"{s.events_table}.{s.event_kind} = ?")
        self.bind(kind)
        if node.seconds is not None:
            sql += f" AND {s.events_table}.{s.event_at} >= ?"
            self.bind(self.now - node.seconds)
        return sql + ")"

    # --- columns -----------------------------------------------------------------
    def column(self, f: Field) -> tuple[str, ColumnType]:
        kind = self.schema.columns.get(f.name)
        if kind is None:
            raise SegmentError(f"unknown contact field {f.name!r}")
        ref = self.schema.contacts_ref
        if kind is ColumnType.DOMAIN:
            address = f"{ref}.{self.schema.address_column}"
            return f"lower(substr({address}, instr({address}, '@') + 1))", kind
        return f"{ref}.{f.name}", kind

    def column_value(self, f: Field, kind: ColumnType, value: Literal) -> object:
        if kind is ColumnType.TIMESTAMP:
            return _timestamp(f.name, value)
        if not isinstance(value, str):
            raise SegmentError(f"{f.name} is text: compare it with a string in quotes")
        return value.lower() if kind is ColumnType.DOMAIN else value

    # --- attributes --------------------------------------------------------------
    def attr_type(self, name: str) -> str:
        column = f"{self.schema.contacts_ref}.{self.schema.attributes_column}"
        if _SIMPLE_KEY.fullmatch(name):
            self.bind(_path(name))
            return f"json_type({column}, ?)"
        self.bind(name)
        return f"(SELECT type FROM json_each({column}) WHERE key = ?)"

    def attr_value(self, name: str) -> str:
        column = f"{self.schema.contacts_ref}.{self.schema.attributes_column}"
        if _SIMPLE_KEY.fullmatch(name):
            self.bind(_path(name))
            return f"json_extract({column}, ?)"
        self.bind(name)
        return f"(SELECT value FROM json_each({column}) WHERE key = ?)"

    def text_expr(self, name: str) -> str:
        """The attribute when it is text, else NULL."""
        kind = self.attr_type(name)
        value = self.attr_value(name)
        return f"(CASE WHEN {kind} = 'text' THEN {value} END)"

    def number_expr(self, name: str) -> str:
        """The attribute as a number: a JSON number, or text that holds only one."""
        kind = self.attr_type(name)
        value = self.attr_value(name)
        return (f"(SELECT CASE WHEN t IN ('integer', 'real') THEN v WHEN t = 'text' AND "
                f"trim(v) GLOB '*[0-9]*' AND trim(v) NOT GLOB '*[^0-9.eE+-]*' THEN "
                f"CAST(trim(v) AS REAL) END FROM (SELECT {kind} AS t, {value} AS v))")

    def bool_expr(self, name: str, value: bool) -> str:
        word = "true" if value else "false"
        kind = self.attr_type(name)
        self.bind(word)  # parameters are bound in the order their ? appear
        text = self.text_expr(name)
        self.bind(word)
        return f"({kind} = ? OR lower({text}) = ?)"

    # --- conditions --------------------------------------------------------------
    def compare(self, f: Field, op: CompareOp, value: Literal) -> str:
        if op is CompareOp.NE:
            return f"(NOT {self.compare(f, CompareOp.EQ, value)})"
        if f.kind is FieldKind.COLUMN:
            sql, kind = self.column(f)
            self.bind(self.column_value(f, kind, value))
            return f"coalesce({sql} {op.value} ?, 0)"
        if isinstance(value, bool):
            if op is not CompareOp.EQ:
                raise SegmentError("true and false compare only with = and !=")
            return f"coalesce({self.bool_expr(f.name, value)}, 0)"
        expr = self.text_expr(f.name) if isinstance(value, str) else \
            self.number_expr(f.name)
        self.bind(value)
        return f"coalesce({expr} {op.value} ?, 0)"

    def in_list(self, f: Field, values: tuple[Literal, ...]) -> str:
        if f.kind is FieldKind.COLUMN:
            sql, kind = self.column(f)
            bound = [self.column_value(f, kind, v) for v in values]
            self.bind(*bound)
            return f"coalesce({sql} IN ({', '.join('?' * len(bound))}), 0)"
        groups: list[str] = []
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if strings:
            groups.append(self._in(self.text_expr(f.name), strings))
        if numbers:
            groups.append(self._in(self.number_expr(f.name), numbers))
        for flag in sorted({v for v in values if isinstance(v, bool)}):
            groups.append(self.bool_expr(f.name, flag))
        return "coalesce(" + " OR ".join(groups) + ", 0)"

    def _in(self, expr: str, values: list[str] | list[int | float]) -> str:
        self.bind(*values)
        return f"{expr} IN ({', '.join('?' * len(values))})"

    def contains(self, f: Field, value: str) -> str:
        if f.kind is FieldKind.COLUMN:
            sql, kind = self.column(f)
            if kind is ColumnType.TIMESTAMP:
                raise SegmentError(f"{f.name} is a time: contains does not apply")
            expr = sql
        else:
            expr = self.text_expr(f.name)
        self.bind(value.lower() if f.kind is FieldKind.COLUMN and
                  self.schema.columns[f.name] is ColumnType.DOMAIN else value)
        return f"coalesce(instr({expr}, ?) > 0, 0)"

    def exists(self, f: Field) -> str:
        if f.kind is FieldKind.COLUMN:
            sql, kind = self.column(f)
            if kind is ColumnType.TIMESTAMP:
                return f"({sql} IS NOT NULL)"
            return f"coalesce({sql} != '', 0)"
        return f"coalesce({self.attr_type(f.name)} != 'null', 0)"

    def within(self, f: Field, seconds: float) -> str:
        if f.kind is not FieldKind.COLUMN or self.schema.columns.get(f.name) \
                is not ColumnType.TIMESTAMP:
            raise SegmentError(f"within applies to a time ({', '.join(self._times())}) or "
                               "to engagement (opened, clicked)")
        sql, _ = self.column(f)
        self.bind(self.now - seconds)
        return f"coalesce({sql} >= ?, 0)"

    def _times(self) -> list[str]:
        return [n for n, k in self.schema.columns.items() if k is ColumnType.TIMESTAMP]


def _path(name: str) -> str:
    return f'$."{name}"'


def _timestamp(name: str, value: Literal) -> float:
    if isinstance(value, bool):
        raise SegmentError(f"{name} is a time: compare it with a date or a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise SegmentError(f"{name} is a time: {value!r} is not an ISO date "
                           "(2026-01-31 or 2026-01-31T12:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
