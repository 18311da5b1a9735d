"""The one exception family of modelwatch.

ModelwatchError                 base: the CLI prints its message on one line, exit 1
├── BadInput                    a user-supplied value is wrong (time, path, option)
│   └── BadParameter            a query parameter SPEC 4 rejects (HTTP 400)
├── PayloadRejected             the body is not a catalog (not JSON, no data, success:false)
├── UpstreamError               the upstream was unreachable or kept failing (5xx, timeouts)
├── StoreError                  the DuckDB store cannot do what was asked
│   └── StoreLocked             another process holds the database file
└── UnknownSource               no adapter or configuration for a source name
"""

from __future__ import annotations


class ModelwatchError(Exception):
    """Base class: every error a user can cause or meet, with a one-line message."""


class BadInput(ModelwatchError):
    """A value given by the user is not valid."""


class BadParameter(BadInput):
    """A catalog query parameter is neither documented nor present in the catalog."""


class PayloadRejected(ModelwatchError):
    """The upstream answered, but the body is not a catalog."""

    status: int | None = None
    body: bytes | None = None


class UpstreamError(ModelwatchError):
    """The upstream failed (connection, timeout, 5xx, 429) after every retry.

    `status` and `body` hold the last answer, if any, so it can be archived.
    """

    status: int | None = None
    body: bytes | None = None


class StoreError(ModelwatchError):
    """The store refused an operation."""


class StoreLocked(StoreError):
    """Another process holds the database; DuckDB allows one writer per file."""


class UnknownSource(BadInput):
    """No adapter is registered under that source name."""
