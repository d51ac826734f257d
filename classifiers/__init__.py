"""Rights-request classification (spaCy), exposed to the core through a small protocol."""
