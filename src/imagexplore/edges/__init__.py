"""Chapter 3: edge detection (HED, RDS, FCFN edges) and the BSDS boundary benchmark."""
