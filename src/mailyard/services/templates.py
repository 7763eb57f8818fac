"""Stored templates of transactional mail: what ``/api/v1/templates`` and ``mailyard
template`` do, in one place.

A template is a subject and an HTML and/or text body, Jinja2 in the sandbox of
:mod:`mailyard.bulk.templates`, stored under a name in ``data_dir/transactional.db``;
``POST /api/v1/messages`` with ``"template": NAME`` renders it with the request's
variables.  It is compiled before it is stored, so a syntax error is refused at once
(``invalid_template``) rather than at the first send.  Storing under an existing name
replaces the template.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from mailyard.bulk.templates.render import CompiledTemplate, TemplateSource, TemplateSyntaxProblem
from mailyard.services.errors import error
from mailyard.transactional.sqlite import SqliteTransactionalStore, StoredTemplate

__all__ = ["MAX_SOURCE", "MAX_SUBJECT", "MessageTemplates"]

MAX_SOURCE = 262_144  # characters of an HTML or text body
MAX_SUBJECT = 2048
T = TypeVar("T")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise error("invalid_template_name", "a template name is 1-64 letters, digits and "
                    "_ . -, starting with a letter or digit")
    return name


class MessageTemplates:
    """Blocking (SQLite); raises ServiceError."""

    def __init__(self, store: SqliteTransactionalStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def put(self, name: str, subject: str, html: str | None, text: str | None
            ) -> StoredTemplate:
        check_name(name)
        if len(subject) > MAX_SUBJECT or any(len(p or "") > MAX_SOURCE for p in (html, text)):
            raise error("template_too_large", f"a template's subject is at most {MAX_SUBJECT} "
                        f"characters, each body at most {MAX_SOURCE}")
        try:
            CompiledTemplate(TemplateSource(subject, html, text))
        except TemplateSyntaxProblem as exc:
            raise error("invalid_template", str(exc)) from None
        template = StoredTemplate(name, subject, html, text, self.clock())
        self._storage(self.store.put_template, template)
        return template

    def get(self, name: str) -> StoredTemplate:
        found = self._storage(self.store.template, check_name(name))
        if found is None:
            raise error("no_such_template", f"no template {name!r}")
        return found

    def list(self) -> list[StoredTemplate]:
        return self._storage(self.store.templates)

    def delete(self, name: str) -> None:
        if not self._storage(self.store.delete_template, check_name(name)):
            raise error("no_such_template", f"no template {name!r}")

    @staticmethod
    def _storage(call: Callable[..., T], *args: object) -> T:
        try:
            return call(*args)
        except (sqlite3.Error, OSError) as exc:
            raise error("storage_failed", f"cannot use the template store: {exc}") from None
