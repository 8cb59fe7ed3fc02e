"""Image retrieval (DeepIndex, thesis ch. 4): patch features, the 1-D / 2-D inverted index, evaluation protocols.

``from imagexplore.retrieval import Index``: build, search, add, save and load an index of image files.
"""

from imagexplore.retrieval.api import Index

__all__ = ["Index"]
