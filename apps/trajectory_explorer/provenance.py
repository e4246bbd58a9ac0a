"""Which store each run was trained on, compared with the store the app shows.

The check is shared with ``protein-care plot`` and ``compare`` and lives in
:mod:`protein_care.provenance` (apps import protein_care, never the reverse); this module
keeps the names the app imports.
"""

from __future__ import annotations

from protein_care.provenance import (
    SELECTIONS,
    StoreMismatch,
    atoms,
    compare,
    different_stores_message,
    store_mismatch,
    store_selection,
)

__all__ = ["SELECTIONS", "StoreMismatch", "atoms", "compare", "different_stores_message", "store_mismatch",
           "store_selection"]
