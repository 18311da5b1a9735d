"""The one exception family of modelwatch.

ModelwatchError                 base: the CLI prints its message on one line, exit 1
├── BadInput                    a user-supplied value is wrong (time, path, option)
│   ├── BadParameter            a query parameter SPEC 4 rejects (HTTP 400)
│   └── UnknownSource           no adapter or configuration for a source name
├── FetchError                  a fetch gave no catalog (carries status and body)
│   ├── PayloadRejected         the body is not a catalog (not JSON, no data, success:false)
│   └── UpstreamError           the upstream was unreachable or kept failing (5xx, timeouts)
├── StoreError                  the DuckDB store cannot do what was asked
│   └── StoreLocked             another process holds the database file
├── RunFailed                   a scheduled run recorded its fetches but applied nothing
└── DeliveryFailed              an alert's message was not delivered (`alerts test`)
"""

from __future__ import annotations


class ModelwatchError(Exception):
    """Base class: every error a user can cause or meet, with a one-line message."""


class BadInput(ModelwatchError):
    """A value given by the user is not valid."""


class BadParameter(BadInput):
    """A catalog query parameter is neither documented nor present in the catalog."""


class FetchError(ModelwatchError):
    """A fetch that produced no catalog; `status` and `body` hold the last answer, if
    any, so the attempt can be recorded and its bytes archived."""

    def __init__(self, message: str, *, status: int | None = None, body: bytes | None = None):
        super().__init__(message)
        self.status = status
        self.body = body


class PayloadRejected(FetchError):
    """The upstream answered, but the body is not a catalog."""


class UpstreamError(FetchError):
    """The upstream failed (connection, timeout, 5xx, 429) after every retry."""


class StoreError(ModelwatchError):
    """The store refused an operation."""


class StoreLocked(StoreError):
    """Another process holds the database; DuckDB allows one writer per file."""


class RunFailed(ModelwatchError):
    """A scheduled run recorded what happened, but a source was rejected, held or failed."""


class DeliveryFailed(ModelwatchError):
    """An alert's message did not reach its destination (the message says why, no secret)."""


class UnknownSource(BadInput):
    """No adapter is registered under that source name."""


MESSAGE_LIMIT = 200


def upstream_message(doc: object) -> str | None:
    """The `message` of an upstream's error document (AiHubMix's `{"message"}` or
    OpenAI's `{"error": {"message"}}`), whitespace folded to one line and bounded."""
    if not isinstance(doc, dict):
        return None
    message = doc.get("message")
    if not message and isinstance(doc.get("error"), dict):
        message = doc["error"].get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    text = " ".join(message.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
