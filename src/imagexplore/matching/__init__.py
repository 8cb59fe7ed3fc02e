"""Image-text matching (thesis chapter 5): RRF-Net, the bi-rank and VSE++ losses, recall metrics."""
