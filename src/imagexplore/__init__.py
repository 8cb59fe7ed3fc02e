"""imagexplore: deep learning for image classification, retrieval and synthesis.

Implements the methods of "Exploring Images with Deep Learning for Classification, Retrieval and Synthesis"
(Yu Liu, Leiden University, 2018). See the docs/ folder for what is exact and what is reconstructed.
"""

__version__ = "0.1.0"
