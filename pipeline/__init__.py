"""modelwatch: a complete, queryable history of AI model catalogs."""

from pipeline.errors import ModelwatchError
from pipeline.store import Store

__all__ = ["ModelwatchError", "Store", "__version__"]
__version__ = "0.1.0"
