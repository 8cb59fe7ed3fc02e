"""The shapes world: a procedural, deterministic dataset with the ground truth of every chapter.

`ShapesWorld` (`world`) renders scenes, views and persons as numpy arrays; the torch datasets over it are in
`datasets`; the drawing primitives in `render`, the captions in `captions`, the clothed figures in `persons`.
Everything public is importable from here: ``from imagexplore.data.shapes import ShapesWorld, ShapesEdges``.
"""

from imagexplore.data.shapes.datasets import (
    PAIR_DIRECTIONS,
    SPLIT_OFFSETS,
    WORLD_OPTIONS,
    ShapesCaptions,
    ShapesClassification,
    ShapesEdges,
    ShapesPairs,
    ShapesRetrieval,
    ShapesSegmentation,
)
from imagexplore.data.shapes.persons import KEYPOINT_NAMES, PARSING_LABELS, SKELETON
from imagexplore.data.shapes.render import TEXTURE_NAMES, load_textures
from imagexplore.data.shapes.world import (
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOURS,
    IGNORE_INDEX,
    MAX_SIZE,
    MIN_SIZE,
    PATTERNS,
    SCENE_KEYS,
    SHAPE_CLASSES,
    VOC_PALETTE,
    ShapesWorld,
)

__all__ = [
    "BACKGROUNDS",
    "COLOUR_NAMES",
    "COLOURS",
    "IGNORE_INDEX",
    "KEYPOINT_NAMES",
    "MAX_SIZE",
    "MIN_SIZE",
    "PAIR_DIRECTIONS",
    "PARSING_LABELS",
    "PATTERNS",
    "SCENE_KEYS",
    "SHAPE_CLASSES",
    "SKELETON",
    "SPLIT_OFFSETS",
    "TEXTURE_NAMES",
    "VOC_PALETTE",
    "WORLD_OPTIONS",
    "ShapesCaptions",
    "ShapesClassification",
    "ShapesEdges",
    "ShapesPairs",
    "ShapesRetrieval",
    "ShapesSegmentation",
    "ShapesWorld",
    "load_textures",
]
