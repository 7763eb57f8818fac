"""Segments: a small filter language over contact fields, attributes and engagement
(``plan = "pro" and country in ("DE", "AT") and opened within 30 days``), parsed by
hand into a tree (:mod:`.parser`, :mod:`.tree`) and compiled into a parameterised
SQL condition over a declared schema (:mod:`.sql`).  No value from the expression
ever becomes SQL text, and nothing is evaluated as Python."""

from mailyard.bulk.segments.lexer import SegmentError
from mailyard.bulk.segments.parser import MAX_DEPTH, MAX_IN_VALUES, MAX_LENGTH, MAX_TERMS, parse
from mailyard.bulk.segments.sql import SegmentSchema, SqlCondition, compile_segment

__all__ = ["MAX_DEPTH", "MAX_IN_VALUES", "MAX_LENGTH", "MAX_TERMS", "SegmentError",
           "SegmentSchema", "SqlCondition", "compile_segment", "parse"]
