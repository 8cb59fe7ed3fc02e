"""Image-text matching (thesis ch. 5-7): caption sets, feature encoders and caches, matching networks."""
