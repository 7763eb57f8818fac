"""Observability: structured log lines (the metrics live in :mod:`mailyard.metrics`).

``log_event`` writes one line per event, as ``key=value`` text or JSON depending on
``[log] format``.  The metric names below are imported from :mod:`mailyard.metrics`
for the modules that take them from here.

The supervisor and the SMTP workers log through a buffered handler
(``setup_logging(buffered=True)``): a line per transaction or delivery would otherwise
cost a write system call, and a hand-over of the interpreter lock, each.  Lines reach
the file at most :data:`FLUSH_DELAY` seconds later, warnings and errors at once (with
everything before them), and whatever is left when the process exits normally
(``logging.shutdown`` flushes every handler).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from typing import Any

from mailyard.metrics import (  # noqa: F401 - re-exported
    Metrics,
    collect,
    remove_metrics_files,
    render_prometheus,
    retire_metrics_file,
    write_private,
)

FLUSH_DELAY = 0.2  # seconds an INFO line may wait in a buffered handler
MAX_PENDING = 1000  # lines; a buffered handler writes when this many wait


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                              time.gmtime(second))
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        ts = self._timestamp(record.created)
        fields = getattr(record, "fields", None)
        message = record.getMessage()
        if _NEEDS_ESCAPE.search(message):
            message = _escape_controls(message)
        if record.exc_info:  # log.exception(): the traceback, escaped onto this line
            fields = {**(fields or {}), "traceback": self.formatException(record.exc_info)}
        if fields is None:
            return f"{ts} {record.levelname.lower()} {record.name}: {message}"
        parts = [f"{ts} {record.levelname.lower()} {record.name}: {message}"]
        for k, v in fields.items():
            s = v if type(v) is str else str(v)
            if not s or " " in s or '"' in s or "=" in s or _NEEDS_ESCAPE.search(s):
                s = _quote(s)
            parts.append(f"{k}={s}")
        return " ".join(parts)


# C0 controls, DEL, the C1 controls and the Unicode line/paragraph separators: none may
# reach a text log line raw, or a value could end the line (or forge a new one) or
# drive the terminal that shows the log.
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_controls(text: str) -> str:
    return _NEEDS_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _quote(value: str) -> str:
    """A double-quoted value with every control character escaped (JSON string rules,
    plus \\u escapes for DEL, C1 and U+2028/9, which JSON would leave raw)."""
    return _escape_controls(json.dumps(value, ensure_ascii=False))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        line = json.dumps(out, ensure_ascii=False, default=str)
        # JSON escapes C0 controls itself; DEL, C1 and U+2028/9 it leaves raw.
        return _escape_controls(line) if _NEEDS_ESCAPE.search(line) else line


class BufferedLineHandler(logging.Handler):
    """Collects formatted lines and writes them with one ``write`` per flush: after
    :data:`FLUSH_DELAY` seconds (a flusher thread), at once for a WARNING or worse,
    when :data:`MAX_PENDING` lines wait, and at close.  Whole lines per write, so
    several processes appending to one file never split each other's lines."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self._pending: list[str] = []
        self._dirty = threading.Event()
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        self._pending.append(line + "\n")
        if record.levelno >= logging.WARNING or len(self._pending) >= MAX_PENDING:
            self.flush()
        elif not self._dirty.is_set():
            self._dirty.set()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            data = "".join(self._pending).encode("utf-8", "backslashreplace")
            self._pending.clear()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError as exc:
                sys.stderr.write(f"mailyard: cannot write the log: {exc}\n")

    def close(self) -> None:
        self.flush()
        with self.lock:  # type: ignore[union-attr]
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        super().close()

    def _flusher(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(FLUSH_DELAY)
            self._dirty.clear()
            self.flush()


LOG_FILE_MODE = 0o640  # the owner writes, its group (an admin group, say) may read


def _log_fd(file: str) -> int:
    """The log file opened for appending (created :data:`LOG_FILE_MODE`, and made
    unreadable to others if it was), or a duplicate of standard error."""
    if file:
        fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     LOG_FILE_MODE)
        try:
            mode = os.fstat(fd).st_mode
            if mode & 0o007:
                os.fchmod(fd, mode & 0o770)
        except OSError:
            pass  # not ours to change
        return fd
    return os.dup(sys.stderr.fileno())


def setup_logging(fmt: str = "text", level: str = "info", file: str = "",
                  buffered: bool = False) -> None:
    """Log to ``file`` (or standard error); ``buffered`` for busy processes (see above)."""
    handler: logging.Handler
    if buffered and not file:
        try:
            sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: a capture
            buffered = False  # standard error is no file: hand it the lines one by one
    if buffered:
        handler = BufferedLineHandler(_log_fd(file))
    else:
        if file:
            os.close(_log_fd(file))  # created with the right mode before logging opens it
            handler = logging.FileHandler(file)
        else:
            handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    # Neither format shows the caller, thread or process: skip collecting them (the
    # optimisations listed in the logging HOWTO).
    logging._srcfile = None  # type: ignore[attr-defined]  # noqa: SLF001
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("mailyard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO,
              exc_info: BaseException | None = None, **fields: Any) -> None:
    """One structured line: ``event`` plus ``fields`` (queue id, client, from, to, ...).
    With ``exc_info``, the exception's traceback is added as the field ``traceback``
    (escaped like any value, so it stays on the event's one line)."""
    if logger.isEnabledFor(level):
        if exc_info is not None:
            fields["traceback"] = "".join(traceback.format_exception(exc_info)).rstrip("\n")
        logger.log(level, event, extra={"fields": fields})
