"""Where data lives: the lake root, its input catalogue and per-run ledgers."""

from medcurate.lake.catalogue import Catalogue
from medcurate.lake.ledger import Ledger
from medcurate.lake.store import Lake, default_lake_uri

__all__ = ["Catalogue", "Lake", "Ledger", "default_lake_uri"]
