"""The classify task: clip classification (single- and multi-label) on a folder, a CSV, VGGSound or AudioSet."""
