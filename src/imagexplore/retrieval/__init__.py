"""Image retrieval (DeepIndex): evaluation protocols, ground truth readers and, later, the index."""
