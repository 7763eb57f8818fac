"""A template compiled once per campaign, rendered once per contact.

:meth:`CompiledTemplate.render` never raises for a problem in the template or in one
contact's data: it returns a :class:`RenderFailure` (which part, what kind, the message
and the template line), which the campaign engine reports and skips, going on with
the next contact.  Problems found when compiling (syntax, unsupported tags, size)
raise :class:`TemplateSyntaxProblem` at once, before any contact is tried.
"""

from __future__ import annotations

import enum
import re
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError

from mailyard.bulk.templates import sandbox
from mailyard.bulk.templates.html import HtmlFinisher, LinkRewriter, PreparedHtml
from mailyard.bulk.templates.sandbox import (
    MARK_CLOSE,
    MARK_OPEN,
    Budget,
    TemplateLimits,
    TemplateSandbox,
)


class Part(enum.StrEnum):
    SUBJECT = "subject"
    HTML = "html"
    TEXT = "text"
    HEADERS = "headers"  # an address or header value of the message refused


class FailureKind(enum.StrEnum):
    MISSING_VALUE = "missing-value"  # a variable, attribute or key not given
    LIMIT = "limit"  # a loop, size, call or time limit
    FORBIDDEN = "forbidden"  # a sandbox refusal: internals, unsafe call
    HEADER = "header"  # a value that cannot go into a header field (mime.HeaderRefused)
    ERROR = "error"  # anything else the template raised (1/0, a bad filter argument)


@dataclass(frozen=True)
class RenderFailure:
    """One contact for whom the template did not render."""

    part: Part
    kind: FailureKind
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.part} line {self.line}" if self.line else str(self.part)
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part.value, "kind": self.kind.value, "message": self.message,
                "line": self.line}


class TemplateSyntaxProblem(Exception):
    """A template that cannot be compiled; ``str()`` names the part and line."""

    def __init__(self, part: Part, message: str, line: int | None = None) -> None:
        super().__init__(f"{part}{f' line {line}' if line else ''}: {message}")
        self.part, self.message, self.line = part, message, line


@dataclass(frozen=True)
class TemplateSource:
    """What an author writes: a subject and an HTML and/or a text body.  Without a
    text body, the text part is made from the HTML."""

    subject: str
    html: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class ContactFields:
    address: str
    name: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tracking:
    """Per-contact tracking hooks; both None when tracking is off for the campaign."""

    links: LinkRewriter | None = None  # every http(s) <a href> -> the tracked URL
    open_pixel_url: str | None = None


@dataclass(frozen=True)
class RenderedContent:
    subject: str  # one line: CR, LF and other controls already turned into spaces
    html: str | None
    text: str


#: Names the render provides; caller variables may not reuse them.
RESERVED_NAMES = frozenset({"contact", "address", "name", "attributes", "unsubscribe_url",
                            "view_online_url"})

_HTML_ENV = TemplateSandbox(autoescape=True)
_TEXT_ENV = TemplateSandbox(autoescape=False)
# Constructs that capture rendered output into a value the template may transform
# further (``{% filter upper %}``, macros, ``{% set %}`` blocks): the values in them
# must be real, so such a template is rendered without the skeleton.
_CAPTURING = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock,
              nodes.Block)
_OUTSIDE = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: str) -> str:
    """A header value from rendered text: controls (CR and LF first) become one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


class _CompiledPart:
    def __init__(self, part: Part, source: str, env: TemplateSandbox,
                 limits: TemplateLimits) -> None:
        if len(source) > limits.max_source_chars:
            raise TemplateSyntaxProblem(part, f"longer than {limits.max_source_chars} "
                                        "characters")
        self.part = part
        source = source.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
        try:
            tree = env.parse(source, name=part.value, filename=f"<{part.value}>")
            for node in tree.find_all(_OUTSIDE):
                raise TemplateSyntaxProblem(part, f"{type(node).__name__.lower()} is not "
                                            "supported in templates", node.lineno)
            self.capturing = any(True for _ in tree.find_all(_CAPTURING)) or any(
                loop.recursive for loop in tree.find_all(nodes.For))
            code = env.compile(tree, name=part.value, filename=f"<{part.value}>")
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntaxProblem(part, exc.message or "syntax error",
                                        exc.lineno) from None
        except RecursionError:  # the parser and compiler recurse once per nesting level
            raise TemplateSyntaxProblem(part, "nested too deeply") from None
        self.template = env.template_class.from_code(env, code, env.make_globals(None))
        self.filename = f"<{part.value}>"

    def render(self, variables: dict[str, Any], budget: Budget) -> str | RenderFailure:
        token = sandbox.enter(budget)
        try:
            ctx = self.template.new_context(variables)
            out: list[str] = []
            for chunk in self.template.root_render_func(ctx):
                out.append(chunk)
                budget.charge_output(len(chunk))
            return "".join(out)
        except jinja2.UndefinedError as exc:
            return self._failure(FailureKind.MISSING_VALUE, exc)
        except sandbox.LimitExceeded as exc:
            return self._failure(FailureKind.LIMIT, exc)
        except SecurityError as exc:
            return self._failure(FailureKind.FORBIDDEN, exc)
        except RecursionError as exc:
            return self._failure(FailureKind.LIMIT, exc, "nested too deeply")
        except Exception as exc:  # noqa: BLE001 - the template is user code: what it raises is its own failure
            return self._failure(FailureKind.ERROR, exc, f"{type(exc).__name__}: {exc}")
        finally:
            sandbox.leave(token)

    def _failure(self, kind: FailureKind, exc: BaseException,
                 message: str | None = None) -> RenderFailure:
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == self.filename:
                line = self.template.get_corresponding_lineno(lineno)
        text = message or str(exc) or type(exc).__name__
        return RenderFailure(self.part, kind, text[:500], line)


class CompiledTemplate:
    """A template ready to render for many contacts (and from several threads)."""

    def __init__(self, source: TemplateSource, limits: TemplateLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if source.html is None and source.text is None:
            raise TemplateSyntaxProblem(Part.HTML, "a template needs an HTML or a text body")
        self.limits = limits or TemplateLimits()
        self.clock = clock
        self.subject = _CompiledPart(Part.SUBJECT, source.subject, _TEXT_ENV, self.limits)
        self.html = (_CompiledPart(Part.HTML, source.html, _HTML_ENV, self.limits)
                     if source.html is not None else None)
        self.text = (_CompiledPart(Part.TEXT, source.text, _TEXT_ENV, self.limits)
                     if source.text is not None else None)
        self.finisher = HtmlFinisher(want_text=self.text is None)

    def render(self, contact: ContactFields, *, unsubscribe_url: str,
               view_online_url: str = "", variables: Mapping[str, Any] | None = None,
               tracking: Tracking | None = None) -> RenderedContent | RenderFailure:
        given = dict(variables or {})
        clash = RESERVED_NAMES.intersection(given)
        if clash:
            raise ValueError(f"reserved template variable(s): {', '.join(sorted(clash))}")
        attributes = dict(contact.attributes)
        given.update(address=contact.address, name=contact.name, attributes=attributes,
                     contact={"address": contact.address, "name": contact.name,
                              "attributes": attributes},
                     unsubscribe_url=unsubscribe_url, view_online_url=view_online_url)
        subject = self.subject.render(given, self._budget())
        if isinstance(subject, RenderFailure):
            return subject
        html = text = None
        if self.html is not None:
            finished = self._render_html(self.html, given, tracking or Tracking())
            if isinstance(finished, RenderFailure):
                return finished
            html, text = finished
        if self.text is not None:
            written = self.text.render(given, self._budget())
            if isinstance(written, RenderFailure):
                return written
            text = written
        return RenderedContent(one_line(subject), html, text or "")

    def _budget(self, values: list[Any] | None = None) -> Budget:
        budget = Budget(self.limits, self.clock)
        budget.values = values
        return budget

    def _render_html(self, part: _CompiledPart, given: dict[str, Any],
                     tracking: Tracking) -> tuple[str, str | None] | RenderFailure:
        prepared: PreparedHtml | None = None
        values: list[str] = []
        if not part.capturing:
            skeleton = part.render(given, self._budget(values))
            if isinstance(skeleton, RenderFailure):
                return skeleton
            prepared = self.finisher.skeleton(skeleton, len(values))
        if prepared is None:
            values = []
            rendered = part.render(given, self._budget())
            if isinstance(rendered, RenderFailure):
                return rendered
            prepared = self.finisher.direct(rendered)
        html = prepared.fill_html(values, tracking.links, tracking.open_pixel_url)
        text = prepared.fill_text(values) if self.finisher.want_text else None
        return html, text

