"""Tokens of the segment language.  Hand-written, like the parser: the grammar is a
dozen rules, and a hand-written scanner gives exact error positions and limits that a
generator would have to be taught."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class SegmentError(ValueError):
    """An expression that cannot be used, with the character position of the problem."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" (at character {position + 1})" if position is not None else ""
        super().__init__(f"{message}{where}")
        self.message, self.position = message, position


class TokenKind(enum.StrEnum):
    WORD = "word"  # a keyword or a field name
    STRING = "string"
    NUMBER = "number"
    OP = "operator"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    DOT = "."
    END = "end of expression"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # the word, the operator, the decoded string or the number's text
    position: int

    def is_word(self, *words: str) -> bool:
        return self.kind is TokenKind.WORD and self.text.lower() in words


_SPACE = re.compile(r"[ \t\r\n]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.])")
_OPS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">")
_PUNCT = {"(": TokenKind.LPAREN, ")": TokenKind.RPAREN, "[": TokenKind.LBRACKET,
          "]": TokenKind.RBRACKET, ",": TokenKind.COMMA, ".": TokenKind.DOT}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while True:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        if pos >= len(text):
            tokens.append(Token(TokenKind.END, "", pos))
            return tokens
        char = text[pos]
        if char in "\"'":
            value, end = _string(text, pos)
            tokens.append(Token(TokenKind.STRING, value, pos))
            pos = end
        elif (number := _NUMBER.match(text, pos)) is not None:
            tokens.append(Token(TokenKind.NUMBER, number.group(), pos))
            pos = number.end()
        elif (word := _WORD.match(text, pos)) is not None:
            tokens.append(Token(TokenKind.WORD, word.group(), pos))
            pos = word.end()
        elif char in _PUNCT:
            tokens.append(Token(_PUNCT[char], char, pos))
            pos += 1
        else:
            op = next((o for o in _OPS if text.startswith(o, pos)), None)
            if op is None:
                raise SegmentError(f"unexpected character {char!r}", pos)
            tokens.append(Token(TokenKind.OP, op, pos))
            pos += len(op)


def _string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\\":
            escaped = text[pos + 1:pos + 2]
            if escaped not in _ESCAPES:
                raise SegmentError("unknown escape in a string (use \\\" \\' \\\\ \\n \\t)",
                                   pos)
            out.append(_ESCAPES[escaped])
            pos += 2
            continue
        if char == "\x00":
            raise SegmentError("a NUL character in a string", pos)
        out.append(char)
        pos += 1
    raise SegmentError("a string is not closed", start)
