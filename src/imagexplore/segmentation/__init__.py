"""Chapter 2, pixel level: FCFN semantic segmentation (models, metrics, PASCAL VOC / SBD reader, train/eval).

See docs/segmentation.md. The registered models are ``fcfn_vgg16`` and ``fcn_vgg16``
(`imagexplore.segmentation.models`); the metric is `imagexplore.segmentation.metrics.SegmentationEvaluator`.
"""
