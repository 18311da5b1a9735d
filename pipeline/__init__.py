"""modelwatch: a complete, queryable history of AI model catalogs."""

import logging

from pipeline import query  # noqa: E402  (after Store: query imports it)
from pipeline.errors import ModelwatchError
from pipeline.store import Store

__all__ = ["ModelwatchError", "Store", "__version__", "query"]
__version__ = "0.1.0"

# A library logs; the application decides where to (the CLI: nowhere unless asked).
logging.getLogger("pipeline").addHandler(logging.NullHandler())
