"""DeepIndex (thesis ch. 4): an inverted index of quantised deep patch features, with a global signature.

Published (kept exactly): every image has exactly ``P`` (= 14) index entries of 4-byte image ids in both the 1-D
and the 2-D (coupled multi-) index, plus one 512-d float global signature per feature type, so an index costs
14 x 4 + 512 x 4 = 2,104 B per image (1-D) and 4,152 B (2-D), vocabularies and paths excluded.

The modules, in the order an index is made: `config` (`IndexConfig`), `vocabulary` (k-means words and the PCA of
the signature), `postings` (CSR posting lists, idf), `collection` (the indexed images as one immutable
snapshot), `checks` (caller input), `search` (queries and scoring), `inverted` (`InvertedIndex`), `shards`
(`ShardedIndex`) and `storage` (the on-disk format). Ties are broken by the smaller image position, so
`InvertedIndex.add`, `InvertedIndex.merge` and `ShardedIndex` give bit-identical results to a single build.
"""

from imagexplore.retrieval.index.config import KERNELS, LAYOUT_FIELDS, MODES, SCORINGS, IndexConfig
from imagexplore.retrieval.index.inverted import InvertedIndex
from imagexplore.retrieval.index.postings import Postings
from imagexplore.retrieval.index.shards import ShardedIndex, search_shards
from imagexplore.retrieval.index.storage import FORMAT_NAME, FORMAT_VERSION
from imagexplore.retrieval.index.vocabulary import K_RULE

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KERNELS",
    "K_RULE",
    "LAYOUT_FIELDS",
    "MODES",
    "SCORINGS",
    "IndexConfig",
    "InvertedIndex",
    "Postings",
    "ShardedIndex",
    "search_shards",
]
