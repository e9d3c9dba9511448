"""The caption templates: facts read from a sample's attributes, phrased CelebA-Dialog style.

CelebA-Dialog's captions (captions_hq.json) describe five attributes (Bangs, Eyeglasses,
No_Beard, Smiling, Young) in short sentences with a pronoun subject, e.g. "This woman has no
bangs. She wears eyeglasses and is smiling." Here each fact that the sample's attributes decide
adds one sentence; the phrasing of each sentence is drawn by a generator seeded with (seed,
index), so a sample's caption depends only on (seed, index, its attributes, TEMPLATE_VERSION).
Change any phrasing or threshold below together with TEMPLATE_VERSION.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

TEMPLATE_VERSION = "1"

Row = Mapping[str, float | None]  # column name -> value (None = missing or failed)


@dataclass(frozen=True)
class Fact:
    """One binary fact, decided from the first column of `columns` a row has, and its phrasings."""

    columns: tuple[tuple[str, float], ...]  # (column, threshold): present iff value > threshold
    present: tuple[str, ...]                # sentences; {S} subject, {P} possessive
    absent: tuple[str, ...]
    negate: bool = False                    # True: the column measures the opposite (No_Beard)

    def decide(self, row: Row) -> bool | None:
        """True / False, or None if the row has none of the columns."""
        for column, threshold in self.columns:
            value = row.get(column)
            if value is not None and not np.isnan(value):
                return (value > threshold) != self.negate
        return None


# Shares of image pixels above which a mask counts a part as there (tiny parts are parser noise).
FACTS: tuple[Fact, ...] = (
    Fact((("farl.Bangs", 0.5),), ("{S} has bangs.", "{S} has a fringe."),
         ("{S} has no bangs.", "{S} doesn't have any fringe.")),
    Fact((("farl.Eyeglasses", 0.5), ("mask.eyeglasses", 0.005)),
         ("{S} wears eyeglasses.", "{S} is wearing glasses."),
         ("{S} wears no eyeglasses.", "There are no glasses on {P} face.")),
    Fact((("farl.No_Beard", 0.5),), ("{S} has a beard.", "{S} has some beard."),
         ("{S} has no beard.", "{S} doesn't have any beard."), negate=True),
    Fact((("farl.Smiling", 0.5), ("mask.mouth_open", 0.002)),
         ("{S} is smiling.", "{S} has a smile on {P} face."),
         ("{S} is not smiling.", "{S} looks serious.")),
    Fact((("farl.Young", 0.5),), ("{S} is young.", "{S} looks young."),
         ("{S} is not young.", "{S} looks middle-aged.")),
    Fact((("farl.Wearing_Hat", 0.5), ("mask.hat", 0.01)), ("{S} wears a hat.", "{S} has a hat on."),
         ()),
)
YAW_SIDEWAYS_DEG = 20.0  # |deca.yaw_deg| above this: the head is turned


def _subject(row: Row) -> tuple[str, str, str]:
    """(first subject, pronoun, possessive) from farl.Male when known."""
    male = row.get("farl.Male")
    if male is None or np.isnan(male):
        return "The person", "The person", "the person's"
    return ("This man", "He", "his") if male > 0.5 else ("This woman", "She", "her")


def caption(row: Row, seed: int, index: int) -> str:
    """The caption of one sample: one sentence per decided fact, phrasing seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    first, pronoun, possessive = _subject(row)
    sentences = []
    for fact in FACTS:
        decided = fact.decide(row)
        choices = fact.present if decided else fact.absent
        if decided is None or not choices:
            continue
        template = choices[int(rng.integers(len(choices)))]
        sentences.append(template.format(S=first if not sentences else pronoun, P=possessive))
    yaw = row.get("deca.yaw_deg")
    if yaw is not None and not np.isnan(yaw) and abs(yaw) > YAW_SIDEWAYS_DEG:
        sentences.append(f"{first if not sentences else pronoun} turns {possessive} head to the side.")
    if not sentences:
        return "A face."
    return " ".join(s[0].upper() + s[1:] for s in sentences)


CaptionFn = Callable[[Row, int, int], str]
