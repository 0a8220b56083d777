"""Metrics: image quality of reconstructions (`image`), codebook usage (`codebook`), and how real, new and varied
generated slices are (`generation`)."""
