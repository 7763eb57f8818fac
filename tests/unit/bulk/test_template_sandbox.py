"""Hostile templates: sandbox escapes and resource bombs end in a RenderFailure that
names the problem, never in a leak, a hang or an exhausted machine."""

from __future__ import annotations

import pytest

from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    FailureKind,
    Part,
    RenderedContent,
    RenderFailure,
    TemplateSource,
    TemplateSyntaxProblem,
)
from mailyard.bulk.templates.sandbox import TemplateLimits

BOB = ContactFields("bob@example.org", "Bob", {"plan": "pro"})


def render_text(source: str, limits: TemplateLimits | None = None,
                **variables: object) -> RenderedContent | RenderFailure:
    template = CompiledTemplate(TemplateSource(subject="s", text=source), limits)
    return template.render(BOB, unsubscribe_url="https://example.com/u", variables=variables)


def failure(source: str, limits: TemplateLimits | None = None) -> RenderFailure:
    result = render_text(source, limits)
    assert isinstance(result, RenderFailure), result
    assert result.part is Part.TEXT
    return result


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ attributes.__class__ }}",
    "{{ (attributes|attr('__class__')) }}",
    "{{ attributes['__class__'] }}",
    "{{ name.__len__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ dict.mro() }}",
])
def test_internals_are_out_of_reach(source: str) -> None:
    result = render_text(source)
    assert isinstance(result, RenderFailure), result
    assert result.kind in (FailureKind.FORBIDDEN, FailureKind.MISSING_VALUE)


@pytest.mark.parametrize("source", [
    "{{ '{0.__class__}'.format(name) }}",
    "{{ '{0.__class__.__base__.__subclasses__}'.format(name) }}",
    "{{ name.format.__globals__ }}",
    "{{ '{0[__class__]}'.format_map({'a': 1}) }}",
])
def test_format_strings_cannot_reach_internals(source: str) -> None:
    result = render_text(source)
    assert isinstance(result, RenderFailure), result


def test_class_access_is_refused_by_the_sandbox() -> None:
    result = failure("{{ ''.__class__.__mro__ }}")
    assert result.kind is FailureKind.FORBIDDEN
    assert "__class__" in result.message


def test_globals_of_cycler_are_refused() -> None:
    assert failure("{{ cycler.__init__.__globals__ }}").kind is FailureKind.FORBIDDEN


def test_lists_and_dicts_cannot_be_changed() -> None:
    result = failure("{{ attributes.update({'plan': 'free'}) }}")
    assert result.kind is FailureKind.FORBIDDEN


def test_a_huge_range_stops_at_the_iteration_limit() -> None:
    result = failure("{% for i in range(10**9) %}{% endfor %}")
    assert result.kind is FailureKind.LIMIT
    assert "range of 1000000000 numbers" in result.message


def test_nested_loops_stop_at_the_iteration_limit() -> None:
    source = ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% for k in r %}"
              "{% endfor %}{% endfor %}{% endfor %}")
    result = failure(source)
    assert result.kind is FailureKind.LIMIT
    assert "loop iterations" in result.message


def test_iteration_limit_is_exact() -> None:
    limits = TemplateLimits(max_iterations=10)
    assert isinstance(render_text("{% for i in range(10) %}{% endfor %}", limits),
                      RenderedContent)
    assert failure("{% for i in range(11) %}{% endfor %}", limits).kind is FailureKind.LIMIT


@pytest.mark.parametrize("source", [
    "{{ 'x' * 10**9 }}",
    "{{ 10**9 * 'x' }}",
    "{{ ['x'] * 10**9 }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ '%999999999s'|format('x') }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '{:>{}}'.format('x', 10**9) }}",
    "{{ ('x' * 1000).replace('x', 'y' * 10000) }}",
    "{{ ('x' * 1000)|replace('x', 'y' * 10000) }}",
    "{{ ('y' * 100000).join(['a'] * 1000) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ 10 ** 100000 }}",
    "{{ 2 ** (2 ** 20) }}",
    "{{ range(3)|batch(10**9, 'x')|list }}",
])
def test_size_bombs_are_refused_before_allocation(source: str) -> None:
    result = failure(source)
    assert result.kind is FailureKind.LIMIT, result


def test_doubling_by_concatenation_stops() -> None:
    source = ("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
              "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}")
    result = failure(source)
    assert result.kind is FailureKind.LIMIT
    assert "concatenated" in result.message


def test_output_limit_counts_everything_written() -> None:
    limits = TemplateLimits(max_output_chars=1000)
    result = failure("{% for i in range(100) %}0123456789abcdef{% endfor %}", limits)
    assert result.kind is FailureKind.LIMIT
    assert "output" in result.message


def test_output_inside_a_macro_counts_too() -> None:
    limits = TemplateLimits(max_output_chars=1000)
    source = ("{% macro m() %}{% for i in range(500) %}{{ 'abcdefghij' }}{% endfor %}"
              "{% endmacro %}{% set x = m() %}done")
    assert failure(source, limits).kind is FailureKind.LIMIT


def test_exponential_macro_recursion_stops() -> None:
    source = "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}"
    assert failure(source).kind is FailureKind.LIMIT


def test_deep_recursion_stops() -> None:
    source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}"
    result = failure(source, TemplateLimits(max_calls=10**9))
    assert result.kind is FailureKind.LIMIT


def test_recursive_loop_bomb_stops() -> None:
    source = "{% for x in range(1000) recursive %}{{ loop(range(1000)) }}{% endfor %}"
    assert failure(source).kind is FailureKind.LIMIT


def test_time_limit_uses_the_given_clock() -> None:
    ticks = iter(range(0, 10**6, 1))

    def clock() -> float:
        return float(next(ticks))

    template = CompiledTemplate(TemplateSource(subject="s", text=(
        "{% for i in range(1000) %}{% endfor %}")), TemplateLimits(max_seconds=50),
        clock=clock)
    result = template.render(BOB, unsubscribe_url="https://example.com/u")
    assert isinstance(result, RenderFailure)
    assert result.kind is FailureKind.LIMIT and "longer than" in result.message


def test_unsafe_string_methods_are_refused() -> None:
    assert failure("{{ 'x'.translate({}) }}").kind is FailureKind.FORBIDDEN
    assert failure("{{ 'x'.expandtabs(10**9) }}").kind is FailureKind.FORBIDDEN


def test_lipsum_is_gone() -> None:
    assert failure("{{ lipsum(10**6) }}").kind is FailureKind.MISSING_VALUE


@pytest.mark.parametrize("source", [
    "{% include 'x' %}", "{% import 'x' as y %}", "{% from 'x' import y %}",
    "{% extends 'x' %}",
])
def test_templates_cannot_reach_other_templates(source: str) -> None:
    with pytest.raises(TemplateSyntaxProblem, match="not supported"):
        CompiledTemplate(TemplateSource(subject="s", text=source))


def test_ordinary_features_still_work() -> None:
    source = ("{% for w in ['a', 'b'] %}{{ loop.index }}{{ w|upper }}{% endfor %} "
              "{{ '{:,}'.format(1234567) }} {{ '%05.1f' % 3.14159 }} "
              "{{ 'x' * 3 }} {{ name.lower() }} {{ attributes.get('plan') }} "
              "{{ 2 ** 10 }} {{ 'a,b'.split(',')|join('+') }}")
    result = render_text(source)
    assert isinstance(result, RenderedContent)
    assert result.text == "1A2B 1,234,567 003.1 xxx bob pro 1024 a+b"
