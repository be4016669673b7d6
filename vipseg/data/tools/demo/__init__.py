"""Rendered basketball scenes with exact instance masks (``vipseg data demo`` / ``render``).

``court`` (camera, floor, lines, boards, crowd), ``people`` (articulated poses, outfits),
``scene`` (back-to-front composition with an owner map), ``writer`` (VIPriors layout, COCO RLE),
``render_annotations`` (images behind an existing COCO file's masks).
"""
