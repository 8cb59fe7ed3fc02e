"""Datasets: the procedural shapes world and readers for real data in their official layouts."""
