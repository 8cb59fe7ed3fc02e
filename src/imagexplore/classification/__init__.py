"""Chapter 2: classification (the foundation's small baseline; CFN models arrive with the chapter-2 issue)."""
