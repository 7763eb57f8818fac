"""The segment language: what parses into which tree, and the errors (with positions)
and limits for what does not."""

from __future__ import annotations

import pytest

from mailyard.bulk.segments import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_LENGTH,
    MAX_TERMS,
    SegmentError,
    parse,
)
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
    Not,
    Or,
    Within,
)

PLAN = Field(FieldKind.ATTRIBUTE, "plan")
COUNTRY = Field(FieldKind.ATTRIBUTE, "country")


def test_the_example_from_the_issue() -> None:
    tree = parse('plan = "pro" and country in ("DE","AT") and opened within 30 days')
    assert tree == And((Compare(PLAN, CompareOp.EQ, "pro"), In(COUNTRY, ("DE", "AT")),
                        Engaged("opened", 30 * 86_400.0)))


def test_and_binds_tighter_than_or() -> None:
    tree = parse("a = 1 or b = 2 and c = 3")
    a, b, c = (Field(FieldKind.ATTRIBUTE, n) for n in "abc")
    assert tree == Or((Compare(a, CompareOp.EQ, 1),
                       And((Compare(b, CompareOp.EQ, 2), Compare(c, CompareOp.EQ, 3)))))


def test_parentheses_and_not() -> None:
    tree = parse('not (signup_date < "2026-01-01")')
    assert tree == Not(Compare(Field(FieldKind.ATTRIBUTE, "signup_date"), CompareOp.LT,
                               "2026-01-01"))
    assert parse("NOT NOT clicked") == Not(Not(Engaged("clicked", None)))


@pytest.mark.parametrize("text,op", [
    ("x = 1", CompareOp.EQ), ("x == 1", CompareOp.EQ), ("x != 1", CompareOp.NE),
    ("x <> 1", CompareOp.NE), ("x < 1", CompareOp.LT), ("x <= 1", CompareOp.LE),
    ("x > 1", CompareOp.GT), ("x >= 1", CompareOp.GE),
])
def test_comparison_operators(text: str, op: CompareOp) -> None:
    assert parse(text) == Compare(Field(FieldKind.ATTRIBUTE, "x"), op, 1)


def test_literals() -> None:
    x = Field(FieldKind.ATTRIBUTE, "x")
    assert parse("x = -2.5") == Compare(x, CompareOp.EQ, -2.5)
    assert parse("x = true") == Compare(x, CompareOp.EQ, True)
    assert parse("x = 'it\\'s'") == Compare(x, CompareOp.EQ, "it's")
    assert parse('x = "a \\"b\\" \\\\ c"') == Compare(x, CompareOp.EQ, 'a "b" \\ c')


def test_columns_and_attributes() -> None:
    assert parse('name exists') == Exists(Field(FieldKind.COLUMN, "name"))
    assert parse('attributes.name exists') == Exists(Field(FieldKind.ATTRIBUTE, "name"))
    assert parse('attributes["first name"] = "Al"') == Compare(
        Field(FieldKind.ATTRIBUTE, "first name"), CompareOp.EQ, "Al")
    assert parse('attributes["opened"] = 1') == Compare(
        Field(FieldKind.ATTRIBUTE, "opened"), CompareOp.EQ, 1)


def test_other_conditions() -> None:
    assert parse('domain not in ("gmail.com")') == Not(In(Field(FieldKind.COLUMN, "domain"),
                                                          ("gmail.com",)))
    assert parse('name contains "Bob"') == Contains(Field(FieldKind.COLUMN, "name"), "Bob")
    assert parse('plan not contains "pro"') == Not(Contains(PLAN, "pro"))
    assert parse("created within 2 weeks") == Within(Field(FieldKind.COLUMN, "created"),
                                                     14 * 86_400.0)
    assert parse("clicked within 7 days") == Engaged("clicked", 7 * 86_400.0)
    assert parse("opened ever") == Engaged("opened", None)
    assert parse("opened within 12 hours") == Engaged("opened", 43_200.0)


@pytest.mark.parametrize("text,message,position", [
    ("", "empty", 0),
    ("plan =", "expected a string", 6),
    ('plan = "pro" and', "expected a field name", 16),
    ('plan = "pro', "not closed", 7),
    ("plan = 'x\\q'", "unknown escape", 9),
    ("plan ~ 1", "unexpected character", 5),
    ("(plan = 1", "expected ')'", 9),
    ("plan = 1)", "unexpected ) ')'", 8),
    ("plan in ()", "expected a string", 9),
    ("and = 1", "keyword", 0),
    ("opened within 3 fortnights", "unknown unit", 16),
    ("opened within 0 days", "positive", 14),
    ("plan = 99999999999999999999", "out of range", 7),
    ("plan", "expected a comparison", 4),
    ("attributes[plan] = 1", "attribute name in quotes", 11),
])
def test_errors_name_the_problem_and_where(text: str, message: str, position: int) -> None:
    with pytest.raises(SegmentError) as caught:
        parse(text)
    assert message in caught.value.message
    assert caught.value.position == position
    assert f"at character {position + 1}" in str(caught.value)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(SegmentError, match="nested more than"):
        parse("(" * 5_000 + "a = 1" + ")" * 5_000)
    with pytest.raises(SegmentError, match="nested more than"):
        parse("not " * (MAX_DEPTH + 1) + "a = 1")
    parse("(" * MAX_DEPTH + "a = 1" + ")" * MAX_DEPTH)


def test_ten_thousand_terms_are_refused() -> None:
    with pytest.raises(SegmentError, match="characters long"):
        parse(" or ".join(f"a{i} = {i}" for i in range(10_000)))
    with pytest.raises(SegmentError, match=f"more than {MAX_TERMS} conditions"):
        parse(" or ".join("a = 1" for _ in range(MAX_TERMS + 1)))


def test_length_and_list_limits() -> None:
    with pytest.raises(SegmentError, match="characters long"):
        parse("a = '" + "x" * MAX_LENGTH + "'")
    with pytest.raises(SegmentError, match="values in a list"):
        parse("a in (" + ",".join("1" for _ in range(MAX_IN_VALUES + 1)) + ")")
