"""DeepIndex (thesis ch. 4): the inverted index of quantised deep patch features (`inverted`), re-exported here."""

from imagexplore.retrieval.index.inverted import (
    FORMAT_NAME,
    FORMAT_VERSION,
    K_RULE,
    KERNELS,
    MODES,
    SCORINGS,
    IndexConfig,
    InvertedIndex,
    Postings,
    ShardedIndex,
    search_shards,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KERNELS",
    "K_RULE",
    "MODES",
    "SCORINGS",
    "IndexConfig",
    "InvertedIndex",
    "Postings",
    "ShardedIndex",
    "search_shards",
]
