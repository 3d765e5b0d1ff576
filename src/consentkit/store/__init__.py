"""The consent log: tables and the store that appends to and queries them."""

from .store import STORE_ERRORS, ConsentStore, NewRecord, NoticeCopy, RecordFilter, make_engine
from .tables import metadata, notices, records

__all__ = [
    "STORE_ERRORS",
    "ConsentStore",
    "NewRecord",
    "NoticeCopy",
    "RecordFilter",
    "make_engine",
    "metadata",
    "notices",
    "records",
]
