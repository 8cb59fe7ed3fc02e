"""`IndexConfig`: how a DeepIndex is built (types, mode, vocabulary, signatures) and how queries are scored.

Each reconstructed choice of the thesis (ch. 4 steps 3-6) is a field, so it can be corrected without code.
Candidate pruning (issue 16; below `SCALE_MIN_IMAGES` images nothing is pruned unless asked, so results there are
those of the thesis' scoring; ``pruning="none"`` keeps them at any size): ``max_df`` drops
stop words (lists held by more than that fraction of the images) from a query's vote, ``burst`` damps repeated
words (Jégou et al., CVPR 2009), ``max_candidates`` lets only the best candidates by vote reach the signature
stage, ``stop_words="rescore"`` adds the stop words' votes back to those candidates, and ``pruning="scale"``
fills unset ``max_df`` / ``max_candidates`` with `SCALE_PRESET` (and unset ``stop_words`` with "rescore") once an
index holds at least `SCALE_MIN_IMAGES` images (docs/retrieval_scaling.md, "Candidate pruning").
Vocabularies that grow with the collection (issue 16): ``k="auto"`` sizes a vocabulary from the collection's
patch count (`auto_k`, rule `K_AUTO_RULE`); from `HIERARCHICAL_FROM` words on the vocabulary is trained by
two-level k-means, and from `HNSW_FROM` words on patches are assigned to words through an HNSW graph
(``vocab_training`` / ``assignment`` force either way; docs/retrieval_scaling.md, "Vocabularies that grow with
the collection").
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from imagexplore.config import AtLeastOne, NonNegative, Positive, Range, check_fields, from_dict
from imagexplore.errors import ConfigError

MODES = ("1d", "2d")  # the Literal choices below, for messages and the command line
SCORINGS = ("votes_signature", "votes", "signature")
KERNELS = ("exp", "threshold")
BURSTS = ("none", "sqrt", "log")
STOP_WORDS = ("drop", "rescore")
PRUNINGS = ("none", "scale")
# Options that only change how queries are scored, so an index view may swap them without a rebuild.
QUERY_FIELDS = frozenset(
    {
        "ma",
        "scoring",
        "kernel",
        "sigma",
        "threshold",
        "max_df",
        "burst",
        "max_candidates",
        "pruning",
        "stop_words",
    }
)
# pruning="scale": from this many images on, unset max_df / max_candidates take these values, and unset
# stop_words is "rescore". Chosen with bench/tune_pruning.py on the synthetic codes (seed 1, not the tests' data)
# at 100k (k 1,024) and 1M images (k auto): with the stop words' votes added back to the candidates, max_df 0.1
# keeps the top-10 agreement with unpruned scoring at 0.99-1.00 while the votes skip the long lists; a count of
# candidates (not a fraction) keeps the signature stage's cost flat as the collection grows
# (docs/retrieval_scaling.md, "The preset at 1M").
SCALE_MIN_IMAGES = 100_000
SCALE_PRESET = {"max_df": 0.1, "max_candidates": 2000}
# Fields that fix how an index is laid out: shards to be merged or searched together must share them.
# ``assignment`` and ``hnsw_ef_search`` are here because they decide which words a patch gets (an HNSW graph may
# return another word than the exact nearest one): shards assigned differently would not merge into what one
# build gives, and queries would be assigned differently from the shards' postings. ``vocab_training`` and
# ``k`` are not: shards share the vocabulary arrays themselves (`IndexModels.same_as`), however they were made.
LAYOUT_FIELDS = ("types", "mode", "float16_signatures", "assignment", "hnsw_ef_search")
# k="auto": k = clamp(2 ** round(log2(P / auto_patches_per_word)), AUTO_K_MIN, AUTO_K_MAX) for P indexed patches
AUTO_K_MIN = 1024
AUTO_K_MAX = 2**20
K_AUTO_RULE = (
    f"k = clamp(2 ** round(log2(collection patches / auto_patches_per_word)), {AUTO_K_MIN}, {AUTO_K_MAX}) "
    "when k is 'auto', then the small-collection rule"
)
# From this many words on, vocab_training="auto" trains two-level k-means (19x faster than flat at 16,384 words in
# bench/bench_vocabulary.py) ...
HIERARCHICAL_FROM = 16384
# ... and from this many on, assignment="auto" uses HNSW. Not from HIERARCHICAL_FROM: exact assignment is one BLAS
# product, and HNSW (efSearch 128) was slower than it at 16,384 words (9.3 s vs 2.4 s for 100,000 patches, recall
# 0.93) and at 65,536 (12.8 s vs 10.4 s, recall 1.0) on 2 cores; exact grows linearly with k, HNSW barely
# (262,144 words, loaded machine: 23 s vs 134 s, recall 0.99). docs/retrieval_scaling.md has the table.
HNSW_FROM = 131072
VOCAB_TRAININGS = ("auto", "flat", "two_level")
ASSIGNMENTS = ("auto", "exact", "hnsw")
HNSW_M = 32  # neighbours per node of the HNSW graph over the words (faiss.IndexHNSWFlat(D, HNSW_M))
_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class IndexConfig:
    """How a DeepIndex is built (types, mode, vocabulary, signatures) and how queries are scored.

    ``k`` is one vocabulary size for every type or a mapping type -> size; a size may be ``"auto"`` (`auto_k` of
    the collection's patch count). ``mode="1d"`` indexes one feature type, ``"2d"`` the pair of word assignments
    of exactly two types (a coupled multi-index).
    """

    types: tuple[str, ...] = ("feature",)
    mode: Literal["1d", "2d"] = "1d"
    # "auto" by default: AUTO_K_MIN (1,024) words up to ~20k images of 14 patches, then growing with the collection,
    # which is what keeps the scale preset's fixed candidate budget near the unpruned ranking (docs/benchmarks.md)
    k: (
        Annotated[int, AtLeastOne] | Literal["auto"] | dict[str, Annotated[int, AtLeastOne] | Literal["auto"]]
    ) = "auto"
    ma: Annotated[int, AtLeastOne] = 1
    scoring: Literal["votes_signature", "votes", "signature"] = "votes_signature"
    kernel: Literal["exp", "threshold"] = "exp"
    sigma: Annotated[float, Positive] = 0.5
    threshold: Annotated[float, Range(-1, 1)] = 0.5  # a cosine
    # pruning (query options): None / "none" = off, today's exact scoring
    max_df: Annotated[float | None, Range(0, 1, lo_open=True)] = None  # a fraction of the images
    burst: Literal["none", "sqrt", "log"] = "none"
    max_candidates: Annotated[int | float | None, Positive] = None  # a count (int), or a fraction (< 1)
    # what max_df's stop words still do: "drop" (nothing), "rescore" (their votes are added to the candidates that
    # reach the signature stage); None: "rescore" under the scale preset, else "drop"
    stop_words: Literal["drop", "rescore"] | None = None
    # the preset by default: it changes nothing below SCALE_MIN_IMAGES images; "none" keeps the thesis' exact
    # scoring at any size
    pruning: Literal["none", "scale"] = "scale"
    signature_dim: Annotated[int, AtLeastOne] = 512
    float16_signatures: bool = False
    kmeans_niter: Annotated[int, AtLeastOne] = 20
    kmeans_seed: Annotated[int, NonNegative] = 0
    points_per_word: Annotated[int, AtLeastOne] = 20
    # vocabularies that grow with the collection (build-time fields)
    auto_patches_per_word: Annotated[int, AtLeastOne] = 200  # k="auto": about this many postings a word
    max_points_per_word: Annotated[int, AtLeastOne] = 256  # training patches kept per word (seeded subsample)
    vocab_training: Literal["auto", "flat", "two_level"] = "auto"
    assignment: Literal["auto", "exact", "hnsw"] = "auto"
    hnsw_ef_search: Annotated[int, AtLeastOne] = 128

    def __post_init__(self):
        if isinstance(self.k, Mapping):
            object.__setattr__(self, "k", dict(self.k))
        check_fields(self, "index.")  # types and ranges, declared once on the fields above
        object.__setattr__(self, "types", tuple(self.types))
        want = 1 if self.mode == "1d" else 2
        if len(self.types) != want or len(set(self.types)) != want:
            raise ConfigError(
                f"a {self.mode} index needs exactly {want} distinct feature types, got {self.types}"
            )
        for name in self.types:
            if not _TYPE_NAME.fullmatch(name):
                raise ConfigError(
                    f"feature type {name!r} must be letters, digits, '_', '.' or '-' (a file name)"
                )
        if isinstance(self.k, dict) and set(self.k) != set(self.types):
            raise ConfigError(
                f"index k must give one size per feature type {self.types}, got {sorted(self.k)}"
            )
        if self.max_points_per_word < self.points_per_word:
            raise ConfigError(
                f"index max_points_per_word ({self.max_points_per_word}) must be at least points_per_word "
                f"({self.points_per_word}): a word cannot keep fewer training patches than it needs"
            )
        if isinstance(self.max_candidates, float) and self.max_candidates >= 1:
            raise ConfigError(
                f"index max_candidates must be a count (an integer) or a fraction of the images below 1, "
                f"got {self.max_candidates!r}"
            )

    def pruning_for(self, n_images: int) -> tuple[float | None, int | None]:
        """The effective ``(max_df, max_candidates)`` for an index of ``n_images``: the fields as given, unset ones
        filled from `SCALE_PRESET` under ``pruning="scale"`` at `SCALE_MIN_IMAGES` images or more; a fraction of
        candidates becomes a count (rounded up). ``(None, None)`` is today's exact scoring."""
        max_df, max_cands = self.max_df, self.max_candidates
        if self.pruning == "scale" and n_images >= SCALE_MIN_IMAGES:
            max_df = SCALE_PRESET["max_df"] if max_df is None else max_df
            max_cands = SCALE_PRESET["max_candidates"] if max_cands is None else max_cands
        if isinstance(max_cands, float):
            max_cands = max(1, math.ceil(max_cands * n_images))
        return max_df, max_cands

    def stop_words_for(self, n_images: int) -> str:
        """What stop words (lists above ``max_df``) do for an index of ``n_images``: ``"drop"`` - left out of the
        vote - or ``"rescore"`` - left out of the candidates but added to the vote of those that reach the
        signature stage; unset, ``"rescore"`` where `pruning_for` applies the scale preset."""
        if self.stop_words is not None:
            return self.stop_words
        return "rescore" if self.pruning == "scale" and n_images >= SCALE_MIN_IMAGES else "drop"

    def k_for(self, name: str, patches: int | None = None) -> int:
        """The requested vocabulary size of one feature type (before the small-collection rule); ``"auto"`` is
        resolved by `auto_k` from ``patches``, the number of patches of the collection indexed (N x P)."""
        k = self.k[name] if isinstance(self.k, dict) else self.k
        if k != "auto":
            return k
        if patches is None:
            raise ConfigError(
                f"index k of {name!r} is 'auto': it needs the collection's patch count to be resolved"
            )
        return auto_k(patches, self.auto_patches_per_word)

    def training_for(self, k: int) -> str:
        """How a vocabulary of ``k`` words is trained: ``"flat"`` or ``"two_level"`` k-means."""
        if self.vocab_training != "auto":
            return self.vocab_training
        return "two_level" if k >= HIERARCHICAL_FROM else "flat"

    def assignment_for(self, k: int) -> str:
        """How patches are assigned to a vocabulary of ``k`` words: ``"exact"`` or ``"hnsw"``."""
        if self.assignment != "auto":
            return self.assignment
        return "hnsw" if k >= HNSW_FROM else "exact"

    def to_json(self) -> dict:
        """Plain JSON form stored as ``config.json``, read back by `from_json`."""
        out = dataclasses.asdict(self)
        out["types"] = list(self.types)
        return out

    @classmethod
    def from_json(cls, data) -> IndexConfig:
        """An index config from its JSON/YAML mapping: unknown keys, types and ranges checked, one line each."""
        if not isinstance(data, dict):
            raise ConfigError("an index config must be a JSON object of IndexConfig fields")
        return from_dict(cls, data, prefix="index.")


def auto_k(patches: int, patches_per_word: int = 200) -> int:
    """`K_AUTO_RULE`: the vocabulary size of a collection of ``patches`` indexed patches (N images x P), a power
    of two near ``patches / patches_per_word`` (about that many postings a word), clamped to
    [`AUTO_K_MIN`, `AUTO_K_MAX`]."""
    if patches < 1:
        return AUTO_K_MIN
    return int(min(max(2 ** round(math.log2(patches / patches_per_word)), AUTO_K_MIN), AUTO_K_MAX))


def check_same_layout(config: IndexConfig, other: IndexConfig) -> None:
    for name in LAYOUT_FIELDS:
        if getattr(config, name) != getattr(other, name):
            raise ConfigError(
                f"index {name} differs ({getattr(config, name)!r} vs {getattr(other, name)!r}): shards must share it"
            )
