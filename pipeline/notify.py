"""Messages out, through Apprise: `send` one message to one Apprise URL, `known_scheme`.

Apprise speaks to a hundred services (Slack, Discord, ntfy, email, `json://`,
`form://`, ...), so modelwatch has no HTTP sender of its own. Around it:

- **Secrets.** A URL may carry a secret (`${VAR}` expanded by the caller), and Apprise
  and urllib3 log URLs (`POST /hook/<secret>`, a connection error quoting the path).
  While a message is sent, every record of those loggers is redacted
  (`pipeline.secrets.redact`) before any handler sees it, and the error `send` returns
  is built from the redacted records only.
- **Plain text.** Messages go out as `TEXT`; a service that wants Markdown or HTML
  gets them escaped by Apprise, so catalog text cannot become markup.
- **Warnings.** Loading Apprise's plugins imports modules that warn about their own
  deprecation: Apprise's business, silenced while it loads.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pipeline.secrets import redact

LOGGERS = ("apprise", "urllib3", "requests")  # whose records may quote a URL
ERROR_LIMIT = 200
_LOAD = threading.Lock()
_SEND = threading.Lock()  # the log redaction is process-wide: one message at a time
_loaded = False


def _apprise() -> Any:
    """The `apprise` module with its plugins loaded (once), their warnings silenced."""
    global _loaded
    with _LOAD:
        if not _loaded:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import apprise
                from apprise.manager_plugins import NotificationManager

                NotificationManager().load_modules()
            _loaded = True
    import apprise

    return apprise


def known_scheme(scheme: str) -> bool:
    """Whether Apprise has a plugin for `scheme` (`json`, `slack`, `mailto`, ...)."""
    _apprise()
    from apprise.manager_plugins import NotificationManager

    return scheme.lower() in NotificationManager()


class _Redacting(logging.Filter):
    """Rewrites each record with every secret masked, and keeps the warnings."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets
        self.warnings: list[str] = []

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = redact(text, secret)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.clean(text), None
        record.exc_info, record.exc_text = None, None
        if record.levelno >= logging.WARNING and record.name.startswith("apprise"):
            self.warnings.append(record.msg)
        return True


@contextmanager
def _redacted_logs(secrets: list[str]) -> Iterator[_Redacting]:
    names = {
        name
        for name in logging.root.manager.loggerDict
        if name.split(".")[0] in LOGGERS and isinstance(logging.getLogger(name), logging.Logger)
    } | set(LOGGERS)
    loggers = [logging.getLogger(name) for name in sorted(names)]
    redacting = _Redacting(secrets)
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        yield redacting
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)


def one_line(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with the secrets masked, on one line, bounded."""
    for secret in secrets:
        text = redact(text, secret)
    text = " ".join(text.split())
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


def send(url: str, *, title: str, body: str, secrets: list[str]) -> str | None:
    """Send one plain-text message to the Apprise `url`; None when it was delivered,
    else why not, in one line without any of `secrets`."""
    apprise = _apprise()
    with _SEND, _redacted_logs(secrets) as said:
        try:
            sender = apprise.Apprise(
                # no storage path: Apprise keeps nothing on disk; its sockets time out
                # after 4 s (connect, read) unless the URL says otherwise (`cto`, `rto`)
                asset=apprise.AppriseAsset(app_id="modelwatch", app_desc="modelwatch alerts")
            )
            if not sender.add(url):
                return "Apprise cannot use this URL" + _why(said.warnings, secrets)
            delivered = bool(
                sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
            )
        except Exception as exc:  # a plugin's own failure: reported, never raised
            return one_line(f"{type(exc).__name__}: {exc}", secrets)
    return None if delivered else "not delivered" + _why(said.warnings, secrets)


def _why(warned: list[str], secrets: list[str]) -> str:
    return f" ({one_line(warned[-1], secrets)})" if warned else ""
