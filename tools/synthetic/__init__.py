"""Synthetic flowers: procedural 64x64 flowers with known attributes and Oxford-102-style captions.

    from tools.synthetic import generate_dataset, render_flower, parse_caption, spec
    generate_dataset("data/synthetic-flowers", n=8000, seed=0)

What is fixed (palette, geometry, caption vocabulary): docs/synthetic_flowers.md and `spec`.
Files: spec (constants) · render (drawing) · captions (templates, parser) · datalab (DataLab Cup layout) ·
writer (the whole set on disk).
"""
from tools.synthetic import spec
from tools.synthetic.captions import heldout_caption, image_captions, parse_caption
from tools.synthetic.render import render_flower, sample_attributes
from tools.synthetic.writer import generate_dataset

__all__ = ["spec", "generate_dataset", "render_flower", "sample_attributes", "image_captions", "heldout_caption",
           "parse_caption"]
