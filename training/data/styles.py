"""Dance styles: the labels a take carries from its source, which the GPT is conditioned on.

The label comes from where the take was captured, never from looking at the motion:

* ``salsa``:  CMU subjects 60 and 61 (salsa duets, danced as solo takes too);
* ``ballet``: CMU subject 5 (ballet and modern dance: pirouettes, arabesques, jetés);
* ``street``: AIST++ (its ten genres are all street styles: break, pop, lock, hip-hop, house, krump,
  waack, street jazz, ballet jazz) and CMU subject 131 ("Michael Jackson styled motions");
* ``indian``: CMU subject 94 (Indian dance).

A take of unknown origin (a user's own BVH) has no style: the GPT sees it as "any". The order of
``STYLES`` is part of a trained model (style index = 1 + position; 0 is "any"), so new styles go at
the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .clip import MotionClip

STYLES: tuple[str, ...] = ("salsa", "ballet", "street", "indian")
STYLE_DESCRIPTIONS = {
    "salsa": "Salsa (CMU subjects 60/61)",
    "ballet": "Ballet and modern dance (CMU subject 5)",
    "street": "Street: hip-hop, break, lock, pop (AIST++, CMU subject 131)",
    "indian": "Indian dance (CMU subject 94)",
}
_CMU_SUBJECT_STYLES = {60: "salsa", 61: "salsa", 5: "ballet", 131: "street", 94: "indian"}
_AISTPP_SOURCES = {"aistpp", "aistpp_csv", "bailando_json"}


def style_of(clip: MotionClip) -> str | None:
    """The style of a clip from its source (see the module docstring); None when the source is unknown."""
    if clip.source in _AISTPP_SOURCES:
        return "street"
    if clip.source == "bvh":
        m = re.fullmatch(r"(\d+)_(\d+)", clip.name)
        if m:
            return _CMU_SUBJECT_STYLES.get(int(m[1]))
    return None


def label_styles(clips: Sequence[MotionClip]) -> None:
    """Set ``clip.style`` from the source where the loader left it unset."""
    for clip in clips:
        if clip.style is None:
            clip.style = style_of(clip)


def style_index(style: str | None) -> int:
    """The GPT's style input for a label: 0 for "any"/unknown, else 1 + its place in ``STYLES``."""
    return STYLES.index(style) + 1 if style in STYLES else 0
