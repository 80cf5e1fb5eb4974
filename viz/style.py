"""The look every viz picture shares: colours, node styles, sizes, and plain text for matplotlib.

Contract: one place for the colours of weight signs (blue positive, red negative), roles
(input / hidden / output markers and colours), dead nodes, level bands, and the geometry
constants of the drawings; :func:`plain` makes any name or attribute plain text for
matplotlib (``$`` escaped: never typeset as mathtext).

>>> print(plain("cost $5 and $6"))
cost \\$5 and \\$6
"""
from __future__ import annotations


def plain(text: object) -> str:
    """``text`` for a matplotlib text artist, drawn as it is: every ``$`` escaped, so a
    run or file name, or a GraphML attribute, never starts mathtext (``$x^2$`` stays
    ``$x^2$``; an unbalanced ``$\\frac{`` is no parse error).

    >>> print(plain("run $x^2$ (lr 0.1)"))
    run \\$x^2\\$ (lr 0.1)
    """
    return str(text).replace("$", r"\$")


FORMATS = ("png", "svg", "pdf")


POSITIVE = "#1f5fbf"   # blue: positive weight


NEGATIVE = "#d62728"   # red: negative weight


DEAD_FACE = "#ffffff"


DEAD_EDGE = "#9a9a9a"


DEAD_MARK = "#111111"  # large wirings: a dash across the column at each dead node


BANDS = ("#e9edf3", "#dde3ec")  # the column bands behind the nodes of each level, alternating


STYLES = ("auto", "ranked", "weight")


VIEWS = ("graph", "flow", "adjacency")


RANKED_FROM = 2000   # style "auto": ranked from this many real edges, by weight below


FLOW_NEEDS_LEVELS = "--view flow draws the edges between levels: a dynamic wiring has one level (use --view adjacency)"


#: role code -> (name, marker, colour)
ROLE_STYLE = {0: ("input", "s", "#2ca02c"), 1: ("hidden", "o", "#4d4d4d"), 2: ("output", "D", "#8e44ad")}


LABEL_MAX_NODES = 40


REF_PIXELS = 1176 * 560  # the axes of a default 12 x 7 inch, 100 dpi picture


ARC_POINTS = 9       # points per drawn edge (arcs for skip connections)


ARC_HEIGHT = 0.05    # arc bulge per skipped column, in units of the column height


CHORD_BEND = 0.12    # dynamic layout: chord bend, as a fraction of its length


LOOP_RADIUS = 0.035  # dynamic layout: self-loop radius


ARROW_MAX_EDGES = 400  # dynamic layout: arrowheads on at most this many edges, the strongest


ARROW_AT = 0.9       # arrowhead tip position along the edge (0 source, 1 target)


ARROW_SIZE = 0.035   # arrowhead length, in units of the hidden circle's diameter (smaller when many)
