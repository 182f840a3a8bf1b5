"""Secrets never leave the process: the one place that strips them from text.

Everything that can reach a log line, the Durable history or a job status goes through
``redact``: ffmpeg's stderr (it echoes the SAS URLs it was given), exception messages that
activities raise, Batch failure reasons, every log record (``install_log_redaction``).

What it removes:
- SAS query strings: the whole query of a URL that carries a signature (``sig=``) or a
  user-delegation key id (``skoid=``), and any loose SAS field (``sig=``, ``se=``, ``skoid=`` …);
- ``code=`` query values (function keys in webhook URLs);
- bearer tokens and bare JWTs;
- account keys and signatures in connection strings (``AccountKey=``,
  ``SharedAccessSignature=``, ``SharedAccessKey=``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

MASK = "<redacted>"

# Query fields of a SAS (service, account and user-delegation SAS) plus function keys.
_SAS_FIELDS = ("sig", "se", "st", "sp", "sr", "sv", "spr", "sip", "ss", "srt", "sdd", "skoid",
               "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "code")
_SECRET_QUERY = re.compile(r"(?:^|&)(?:sig|skoid|code)=", re.IGNORECASE)
# A URL's query, up to whitespace, a quote, or a colon ending the URL ("<url>: No such file").
_URL_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?#'\"<>]+)\?([^\s#'\"<>]*?)(?=:?(?:[\s'\"<>]|$))",
                        re.IGNORECASE)
_LOOSE_FIELD = re.compile(rf"(?<![\w-])({'|'.join(_SAS_FIELDS)})=[^&\s'\"<>;,]+", re.IGNORECASE)
_BEARER = re.compile(r"\b(Bearer)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_CONN_SECRET = re.compile(r"\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s'\"]+",
                          re.IGNORECASE)


def _url(m: re.Match[str]) -> str:
    return f"{m.group(1)}?{MASK}" if _SECRET_QUERY.search(m.group(2)) else m.group(0)


def redact(text: Any) -> str:
    """``text`` (anything; str() of it) with every secret above replaced by ``<redacted>``."""
    s = str(text)
    s = _URL_QUERY.sub(_url, s)
    s = _LOOSE_FIELD.sub(lambda m: f"{m.group(1)}={MASK}", s)
    s = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", s)
    s = _JWT.sub(MASK, s)
    return _CONN_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", s)


def redacted_error(exc: BaseException) -> Exception:
    """An exception safe to let escape (to the Functions host, the Durable history, App
    Insights): the same message, redacted, naming the original type. Raise it ``from None``
    so the original message does not travel along as the cause."""
    return RuntimeError(f"{type(exc).__name__}: {redact(exc)}")


F = TypeVar("F", bound=Callable[..., Any])


def redact_errors(fn: F) -> F:
    """Let no exception leave ``fn`` unredacted (for Durable activities: what they raise is
    recorded in the orchestration history, App Insights and, in the end, the job's error)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise redacted_error(exc) from None
    return wrapper  # type: ignore[return-value]


_installed = False


def install_log_redaction() -> None:
    """Redact every log record this process creates, whichever logger or handler it goes to
    (the Functions worker's, App Insights', a test's): its message and its traceback."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw text, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
