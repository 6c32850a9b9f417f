"""The fixed vocabulary of the synthetic-flowers set (docs/synthetic_flowers.md).

Evaluation imports these: attribute values, palette RGB, and the exact words captions may use for each value.
Changing anything here changes what the generator draws and what the evaluation expects.
"""
from __future__ import annotations

ATTRIBUTES = ("petal_color", "center_color", "petal_count", "petal_shape")

# palette RGB before the per-image jitter
PETAL_COLORS = {
    "red": (215, 35, 45),
    "orange": (245, 140, 25),
    "yellow": (245, 215, 45),
    "white": (240, 240, 232),
    "pink": (240, 125, 185),
    "purple": (135, 60, 185),
    "blue": (50, 95, 220),
}
CENTER_COLORS = {
    "yellow": (245, 205, 40),
    "brown": (115, 65, 25),
    "black": (30, 25, 25),
    "white": (245, 245, 240),
}
PETAL_COUNTS = (4, 5, 6, 8)
PETAL_SHAPES = ("round", "pointed")

# the only words a caption may use for each value
COUNT_WORDS = {4: "four", 5: "five", 6: "six", 8: "eight"}
SHAPE_WORDS = {"round": ("round", "rounded", "oval"), "pointed": ("pointed", "pointy", "sharp")}
CENTER_WORDS = ("center", "stamen", "pistil", "middle")  # nouns naming the centre disc
PETAL_WORDS = ("petals", "petal", "flower", "bloom", "blossom")  # nouns a petal colour may attach to
COLOR_WORDS = tuple(sorted(set(PETAL_COLORS) | set(CENTER_COLORS)))  # every colour word a caption may contain

# limits the renderer keeps (and the tests check)
MAX_JITTER = 12  # per channel, per image, for petal and centre colours
MAX_SHADE = 0.15  # petal shading factor stays in [1 - MAX_SHADE, 1 + MAX_SHADE]
BG_MAX = 128  # every background/stem pixel has max(R, G, B) <= BG_MAX
PETAL_LENGTH = (18.0, 26.0)  # px at 64x64, centre to tip
CENTER_RADIUS = (0.25, 0.35)  # fraction of petal length
CENTER_OFFSET = 4.0  # px at 64x64, max |dx|, |dy| of the flower centre from the image centre
ROUND_WIDTH = (0.55, 0.80)  # width / length of a round (elliptic) petal
POINTED_WIDTH = (0.22, 0.33)  # width / length of a pointed (lanceolate) petal

CAPTIONS_PER_IMAGE = 10
CAPTION_WORDS = (6, 25)  # min, max words per caption
