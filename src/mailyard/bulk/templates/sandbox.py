"""The Jinja2 environment campaign and transactional templates run in.

Templates are written by operators and API clients, and every value in them may come
from a contact, so a template is untrusted code run once per recipient.  On top of
Jinja2's ``ImmutableSandboxedEnvironment`` (no attribute starting with ``_``, so no
``__class__``/``__mro__``/``__globals__`` walk; no mutation of lists and dicts) this
module bounds what one render may cost, counted per render in a :class:`Budget`:

* loop iterations (every ``for`` iterable is wrapped at compile time; each iteration
  is also charged the literal text of its body, so a loop inside a macro cannot grow
  a hidden buffer without limit), function and method calls (exponential macro
  recursion), and a wall-clock deadline checked at each of those steps;
* the size of every string or list an operator, a filter or a ``str`` method builds,
  checked *before* the allocation where the size is known (``'x' * 10**9``,
  ``'x'.center(10**9)``, ``"%999999999s" % x``), after it for concatenation
  (at most twice the limit is ever allocated);
* the size of integers (``10**10**10``), and the output itself.

Template features that reach outside the template (``include``, ``import``,
``extends``) are refused when the template is compiled; ``lipsum`` is removed.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, NoReturn

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup


@dataclass(frozen=True)
class TemplateLimits:
    """What one render of one part (subject, HTML or text) may cost."""

    max_source_chars: int = 512_000
    max_output_chars: int = 1_000_000
    max_string_chars: int = 1_000_000  # any one string or list built while rendering
    max_iterations: int = 100_000  # loop iterations in one render
    max_calls: int = 100_000  # function, method and macro calls in one render
    max_seconds: float = 2.0
    max_int_bits: int = 16_384


class LimitExceeded(SecurityError):
    """A render went over one of its :class:`TemplateLimits`."""


@dataclass
class Budget:
    """The counters of one render; reached through a context variable, so one compiled
    template can render in several threads at once."""

    limits: TemplateLimits
    clock: Callable[[], float] = time.monotonic
    iterations: int = 0
    calls: int = 0
    output: int = 0
    deadline: float = field(init=False)
    # Placeholder mode (see render.py): the values output by ``{{ }}``, in order.
    values: list[Any] | None = None

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.limits.max_seconds

    def check_time(self) -> None:
        if self.clock() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {self.limits.max_seconds:g} s")

    def charge_output(self, chars: int) -> None:
        self.output += chars
        if self.output > self.limits.max_output_chars:
            raise LimitExceeded(
                f"the output is larger than {self.limits.max_output_chars} characters")


_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("mailyard_template_budget")


def current_budget() -> Budget:
    budget = _BUDGET.get(None)
    if budget is None:  # a render outside run(): the strictest reading is the default one
        budget = Budget(TemplateLimits())
        _BUDGET.set(budget)
    return budget


def enter(budget: Budget) -> contextvars.Token[Budget]:
    return _BUDGET.set(budget)


def leave(token: contextvars.Token[Budget]) -> None:
    _BUDGET.reset(token)


def _too_big(what: str, size: int, limit: int) -> NoReturn:
    raise LimitExceeded(f"{what} would be {size} long; at most {limit} is allowed")


def _check_size(what: str, size: int) -> None:
    limit = current_budget().limits.max_string_chars
    if size > limit:
        _too_big(what, size, limit)


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > current_budget().limits.max_int_bits:
        raise LimitExceeded("an integer in the template is too large")
    return value


def _result_size(value: Any) -> None:
    if isinstance(value, str | list | tuple | bytes):
        _check_size("a value", len(value))


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str) -> None:
    limit = current_budget().limits.max_string_chars
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > limit):
                raise LimitExceeded("a %-format width or precision is too large or dynamic")


def _check_format_string(fmt: str) -> None:
    """``str.format``: no nested fields in a format spec (a width from an argument),
    no width or precision above the string limit."""
    limit = current_budget().limits.max_string_chars
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # format() itself reports the malformed string
    for _literal, _field, spec, _conversion in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("a format spec may not take its width from an argument")
        if any(int(n) > limit for n in re.findall(r"\d+", spec)):
            raise LimitExceeded("a format width or precision is too large")


def _binop(op: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, a result over the limits."""
    seq = (str, list, tuple)
    if op == "*":
        if isinstance(left, seq) and isinstance(right, int):
            _check_size("a repeated value", len(left) * max(right, 0))
        elif isinstance(right, seq) and isinstance(left, int):
            _check_size("a repeated value", len(right) * max(left, 0))
        elif isinstance(left, int) and isinstance(right, int):
            _check_int_bits(left.bit_length() + right.bit_length())
    elif op == "+" and isinstance(left, seq) and isinstance(right, seq):
        _check_size("a joined value", len(left) + len(right))
    elif op == "**" and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1:
            _check_int_bits(left.bit_length() * right)
    elif op == "%" and isinstance(left, str):
        _check_percent_format(left)


def _check_int_bits(bits: int) -> None:
    if bits > current_budget().limits.max_int_bits:
        raise LimitExceeded("an integer in the template would be too large")


def _join_size(sep: str, items: Any) -> None:
    if isinstance(items, list | tuple):
        total = len(sep) * max(len(items) - 1, 0)
        total += sum(len(i) for i in items if isinstance(i, str))
        _check_size("a joined value", total)


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    name = method.__name__
    text: str = method.__self__
    if name not in _STR_METHODS:
        raise SecurityError(f"the string method {name!r} is not available in templates")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check_size("a padded string", args[0])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) \
            and isinstance(args[1], str):
        count = text.count(args[0]) if args[0] else len(text) + 1
        _check_size("a replaced string", len(text) + count * max(len(args[1]) - len(args[0]), 0))
    elif name == "join" and args:
        _join_size(text, args[0])


_STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isdecimal", "isdigit", "islower",
    "isnumeric", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
    "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
    "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
    "swapcase", "title", "upper", "zfill",
})


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter with its arguments checked before and its result after."""

    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        limit = current_budget().limits.max_string_chars
        if name == "center" and len(args) > 1 and isinstance(args[1], int):
            _check_size("a padded string", args[1])
        elif name == "indent":
            width = args[1] if len(args) > 1 else kwargs.get("width", 4)
            if isinstance(width, int) and width > 1000 or isinstance(width, str) \
                    and len(width) > 1000:
                raise LimitExceeded("an indent is at most 1000 characters")
        elif name == "format" and args and isinstance(args[0], str):
            _check_percent_format(args[0])
        elif name == "replace" and len(args) >= 3 and isinstance(args[0], str):
            text, old, new = args[0], str(args[1]), str(args[2])
            count = text.count(old) if old else len(text) + 1
            _check_size("a replaced string", len(text) + count * max(len(new) - len(old), 0))
        elif name == "join" and len(args) > 1 and isinstance(args[1], str):
            items = args[0]
            if isinstance(items, Sized) and len(items) > limit:
                _too_big("a joined list", len(items), limit)
        elif name in ("batch", "slice") and len(args) > 1 and isinstance(args[1], int):
            if args[1] > 10_000:
                raise LimitExceeded(f"{name} takes at most 10000")
        elif name == "wordwrap":
            wrap = kwargs.get("wrapstring", args[3] if len(args) > 3 else None)
            if isinstance(wrap, str) and len(wrap) > 100:
                raise LimitExceeded("wordwrap's wrapstring is at most 100 characters")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        before(args[1:] if passes_first else args, kwargs)
        result = func(*args, **kwargs)
        _result_size(result)
        return result

    # A filter marked pass_context (or environment, eval context) gets that first.
    passes_first = getattr(func, "jinja_pass_arg", None) is not None
    if passes_first:
        guarded.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    guarded.__name__ = func.__name__
    return guarded


class _GuardedCodeGenerator(CodeGenerator):
    """Wraps every ``for`` iterable in ``environment.loop_guard`` and every ``~``
    concatenation in ``environment.concat_guard``."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            literal = _body_literal(loop)
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("loop_guard"),
                                   [loop.iter, nodes.Const(literal)], [], None, None)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_guard(")
        super().visit_Concat(node, frame)
        self.write(")")


def _body_literal(loop: nodes.For) -> int:
    """Characters a loop's body writes whatever the values: its text and constants."""
    size = 0
    for child in loop.body:
        outputs = [child] if isinstance(child, nodes.Output) else []
        for output in [*outputs, *child.find_all(nodes.Output)]:
            for item in output.nodes:
                if isinstance(item, nodes.TemplateData):
                    size += len(item.data)
                elif isinstance(item, nodes.Const) and isinstance(item.value, str):
                    size += len(item.value)
    return size


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The environment; one per autoescape mode, shared by every campaign."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined,
                         finalize=_finalize, auto_reload=False, cache_size=0,
                         keep_trailing_newline=True)
        del self.globals["lipsum"]
        self.globals["range"] = _range
        for name, func in list(self.filters.items()):
            self.filters[name] = _guarded_filter(name, func)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        _binop(operator_, left, right)
        return _check_int(super().call_binop(context, operator_, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        budget = current_budget()
        budget.calls += 1
        if budget.calls > budget.limits.max_calls:
            raise LimitExceeded(f"more than {budget.limits.max_calls} calls in one render")
        budget.check_time()
        if isinstance(getattr(__obj, "__self__", None), str) and callable(__obj):
            _check_str_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _result_size(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_string(fmt)
            return wrapped(*args, **kwargs)

        return checked

    @staticmethod
    def loop_guard(iterable: Iterable[Any], literal: int) -> Iterator[Any]:
        budget = current_budget()
        limit = budget.limits.max_iterations
        for item in iterable:
            budget.iterations += 1
            if budget.iterations > limit:
                raise LimitExceeded(f"more than {limit} loop iterations in one render")
            budget.charge_output(literal)
            budget.check_time()
            yield item

    @staticmethod
    def concat_guard(value: str) -> str:
        _check_size("a concatenated string", len(value))
        return value


def _range(*args: int) -> range:
    """``range`` no longer than a render may loop."""
    numbers = range(*args)
    limit = current_budget().limits.max_iterations
    if len(numbers) > limit:
        raise LimitExceeded(f"a range of {len(numbers)} numbers; at most {limit}")
    return numbers


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` value: counted against the output limit; ``None`` prints as
    nothing; in placeholder mode a plain value is recorded and a marker printed in its
    place."""
    if value is None:
        return ""
    budget = current_budget()
    values = budget.values
    if values is not None and not isinstance(value, Markup):
        text = _unmarked(str(value))
        budget.charge_output(len(text))
        values.append(text)
        return Markup(f"{MARK_OPEN}{len(values) - 1}{MARK_CLOSE}")
    if isinstance(value, str):
        budget.charge_output(len(value))
        if MARK_OPEN in value or MARK_CLOSE in value:
            return type(value)(_unmarked(value))
    return value


def _unmarked(text: str) -> str:
    """A value as an HTML parser reads it: no markers, CR LF and CR as LF, no NUL."""
    if MARK_OPEN in text or MARK_CLOSE in text:
        text = text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


# Markers for placeholder mode: characters from the Unicode private use area.
MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
