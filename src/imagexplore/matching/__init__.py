"""Chapter 5: image–text matching — RRF-Net with the bi-rank loss, feature caches, R@K evaluation, and text →
image search (`Matcher`, `MatchIndex`). Heavy modules load only when their names are used."""

from __future__ import annotations

__all__ = ["Matcher", "MatchIndex", "bi_rank_loss", "read_caption_set"]


def __getattr__(name):
    if name == "Matcher":
        from imagexplore.matching.matcher import Matcher

        return Matcher
    if name == "MatchIndex":
        from imagexplore.matching.index import MatchIndex

        return MatchIndex
    if name == "bi_rank_loss":
        from imagexplore.matching.losses import bi_rank_loss

        return bi_rank_loss
    if name == "read_caption_set":
        from imagexplore.matching.data import read_caption_set

        return read_caption_set
    raise AttributeError(f"module 'imagexplore.matching' has no attribute {name!r}")
