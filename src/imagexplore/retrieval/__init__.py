"""Image retrieval (DeepIndex, thesis ch. 4): patch features, the 1-D / 2-D inverted index, evaluation protocols.

``from imagexplore.retrieval import Index``: build, search, add, save and load an index of image files.
The package imports nothing heavy itself (`Index` is loaded at first use), so that the command line's
`imagexplore.retrieval.cli` and `--help` do not load torch or faiss.
"""

from __future__ import annotations

__all__ = ["Index"]


def __getattr__(name: str):
    if name == "Index":
        from imagexplore.retrieval.api import Index

        return Index
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
