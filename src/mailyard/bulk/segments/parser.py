"""A recursive-descent parser for segment expressions.

Grammar (keywords are case-insensitive)::

    expr      := and_expr ("or" and_expr)*
    and_expr  := unary ("and" unary)*
    unary     := "not" unary | "(" expr ")" | engaged | condition
    engaged   := ENGAGEMENT ["within" NUMBER UNIT | "ever"]     -- opened, clicked
    condition := field ( "exists"
                       | OP literal                             -- = == != <> < <= > >=
                       | ["not"] "in" "(" literal ("," literal)* ")"
                       | ["not"] "contains" STRING
                       | "within" NUMBER UNIT )
    field     := "attributes" ("." WORD | "[" STRING "]") | WORD
    literal   := STRING | NUMBER | "true" | "false"
    UNIT      := minute(s) | hour(s) | day(s) | week(s)

A bare WORD is a contact column when the schema declares one of that name, otherwise
an attribute; ``attributes["..."]`` names any attribute, keywords and odd characters
included.  Limits (length, nesting depth, number of conditions, values in an ``in``
list) stop an expression that would cost the database more than a person writes,
with a clear error rather than a stack overflow or a huge query.
"""

from __future__ import annotations

from collections.abc import Collection

from mailyard.bulk.segments.lexer import SegmentError, Token, TokenKind, tokenize
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

MAX_LENGTH = 16_384  # characters
MAX_DEPTH = 32  # nested parentheses and "not"s
MAX_TERMS = 200  # conditions
MAX_IN_VALUES = 1_000
MAX_WITHIN_SECONDS = 100 * 366 * 86_400

DEFAULT_COLUMNS = frozenset({"address", "name", "status", "created", "domain"})
DEFAULT_ENGAGEMENT = frozenset({"opened", "clicked"})
KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "within", "contains", "ever",
                      "true", "false", "attributes"})
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86_400,
          "days": 86_400, "week": 604_800, "weeks": 604_800}
_OPS = {"=": CompareOp.EQ, "==": CompareOp.EQ, "!=": CompareOp.NE, "<>": CompareOp.NE,
        "<": CompareOp.LT, "<=": CompareOp.LE, ">": CompareOp.GT, ">=": CompareOp.GE}


def parse(text: str, *, columns: Collection[str] = DEFAULT_COLUMNS,
          engagement: Collection[str] = DEFAULT_ENGAGEMENT) -> Node:
    """The tree of an expression, or SegmentError."""
    if len(text) > MAX_LENGTH:
        raise SegmentError(f"the expression is {len(text)} characters long; at most "
                           f"{MAX_LENGTH}")
    parser = _Parser(tokenize(text), frozenset(columns), frozenset(engagement))
    if parser.peek().kind is TokenKind.END:
        raise SegmentError("the expression is empty", 0)
    node = parser.expr()
    end = parser.peek()
    if end.kind is not TokenKind.END:
        raise SegmentError(f"unexpected {_describe(end)}", end.position)
    return node


def _describe(token: Token) -> str:
    if token.kind is TokenKind.END:
        return "end of expression"
    return f"{token.kind.value} {token.text!r}"


class _Parser:
    def __init__(self, tokens: list[Token], columns: frozenset[str],
                 engagement: frozenset[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.terms = 0
        self.columns = columns
        self.engagement = engagement

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not TokenKind.END:
            self.pos += 1
        return token

    def expect(self, kind: TokenKind, what: str) -> Token:
        token = self.take()
        if token.kind is not kind:
            raise SegmentError(f"expected {what}, found {_describe(token)}", token.position)
        return token

    def expr(self) -> Node:
        items = [self.and_expr()]
        while self.peek().is_word("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.peek().is_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        token = self.peek()
        if token.is_word("not") or token.kind is TokenKind.LPAREN:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SegmentError(f"nested more than {MAX_DEPTH} levels deep", token.position)
            self.take()
            if token.kind is TokenKind.LPAREN:
                node = self.expr()
                self.expect(TokenKind.RPAREN, "')'")
            else:
                node = Not(self.unary())
            self.depth -= 1
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise SegmentError(f"more than {MAX_TERMS} conditions", token.position)
        if token.kind is TokenKind.WORD and token.text.lower() in self.engagement:
            return self.engaged()
        return self.condition()

    def engaged(self) -> Node:
        kind = self.take().text.lower()
        if self.peek().is_word("within"):
            self.take()
            return Engaged(kind, self.duration())
        if self.peek().is_word("ever"):
            self.take()
        return Engaged(kind, None)

    def duration(self) -> float:
        number = self.expect(TokenKind.NUMBER, "a number")
        unit = self.expect(TokenKind.WORD, "a unit (minutes, hours, days, weeks)")
        if unit.text.lower() not in _UNITS:
            raise SegmentError(f"unknown unit {unit.text!r} (minutes, hours, days, weeks)",
                               unit.position)
        seconds = float(number.text) * _UNITS[unit.text.lower()]
        if not 0 < seconds <= MAX_WITHIN_SECONDS:
            raise SegmentError("a duration must be positive and at most 100 years",
                               number.position)
        return seconds

    def field(self) -> Field:
        token = self.take()
        if token.kind is not TokenKind.WORD:
            raise SegmentError(f"expected a field name, found {_describe(token)}",
                               token.position)
        word = token.text.lower()
        if word == "attributes":
            if self.peek().kind is TokenKind.DOT:
                self.take()
                return Field(FieldKind.ATTRIBUTE, self.expect(TokenKind.WORD, "a name").text)
            self.expect(TokenKind.LBRACKET, "'.' or '[' after attributes")
            name = self.expect(TokenKind.STRING, "an attribute name in quotes").text
            self.expect(TokenKind.RBRACKET, "']'")
            if not name:
                raise SegmentError("an empty attribute name", token.position)
            return Field(FieldKind.ATTRIBUTE, name)
        if word in KEYWORDS or word in self.engagement:
            raise SegmentError(f"{token.text!r} is a keyword; to name an attribute so, "
                               f"write attributes[\"{token.text}\"]", token.position)
        if word in self.columns:
            return Field(FieldKind.COLUMN, word)
        return Field(FieldKind.ATTRIBUTE, token.text)

    def condition(self) -> Node:
        field = self.field()
        token = self.take()
        if token.is_word("exists"):
            return Exists(field)
        if token.is_word("within"):
            return Within(field, self.duration())
        negated = token.is_word("not")
        if negated:
            token = self.take()
        if token.is_word("in"):
            node: Node = In(field, self.literal_list())
        elif token.is_word("contains"):
            node = Contains(field, self.expect(TokenKind.STRING, "a string").text)
        elif token.kind is TokenKind.OP and not negated:
            return Compare(field, _OPS[token.text], self.literal())
        else:
            raise SegmentError(f"expected a comparison, in, contains, exists or within after "
                               f"{field.name!r}, found {_describe(token)}", token.position)
        return Not(node) if negated else node

    def literal_list(self) -> tuple[Literal, ...]:
        start = self.expect(TokenKind.LPAREN, "'(' after in")
        values = [self.literal()]
        while self.peek().kind is TokenKind.COMMA:
            self.take()
            values.append(self.literal())
            if len(values) > MAX_IN_VALUES:
                raise SegmentError(f"more than {MAX_IN_VALUES} values in a list",
                                   start.position)
        self.expect(TokenKind.RPAREN, "',' or ')'")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.take()
        if token.kind is TokenKind.STRING:
            return token.text
        if token.kind is TokenKind.NUMBER:
            if "." in token.text:
                return float(token.text)
            value = int(token.text)
            if not -(2**63) <= value < 2**63:
                raise SegmentError("a number out of range", token.position)
            return value
        if token.is_word("true", "false"):
            return token.text.lower() == "true"
        raise SegmentError(f"expected a string, number, true or false, found "
                           f"{_describe(token)}", token.position)
