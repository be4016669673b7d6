"""vipseg: instance segmentation from scratch on small COCO datasets."""

__version__ = "0.1.0"
