"""The zero-shot prompt table of the `farl` attribute source: THE one place prompts live.

Each CelebA attribute is a pair (present, absent) of captions. A sample's probability of the
attribute is the softmax over the pair of LOGIT_SCALE * cosine / TEMPERATURE, where cosine is
between the sample's stored FaRL image embedding and each caption's FaRL text embedding (both
unit norm). LOGIT_SCALE = 100 is CLIP's trained logit scale (exp(4.6052), the clamp CLIP and
FaRL train up to); it is fixed here rather than read from a checkpoint so that one table means
the same numbers with any weights. TEMPERATURE > 1 flattens the probabilities, < 1 sharpens
them. Editing any entry (or either constant) changes the attributes folder's digest, so the
new values land in a new folder and never mix with the old ones. README.md shows this table.
"""

from __future__ import annotations

LOGIT_SCALE = 100.0
TEMPERATURE = 1.0

# CelebA attribute -> (caption if present, caption if absent), in CelebA's column order.
PROMPTS: dict[str, tuple[str, str]] = {
    "5_o_Clock_Shadow": ("a photo of a face with a five o'clock shadow",
                         "a photo of a face without a five o'clock shadow"),
    "Arched_Eyebrows": ("a photo of a face with arched eyebrows",
                        "a photo of a face without arched eyebrows"),
    "Attractive": ("a photo of an attractive person", "a photo of an unattractive person"),
    "Bags_Under_Eyes": ("a photo of a face with bags under the eyes",
                        "a photo of a face without bags under the eyes"),
    "Bald": ("a photo of a bald person", "a photo of a person with hair"),
    "Bangs": ("a photo of a face with bangs", "a photo of a face without bangs"),
    "Big_Lips": ("a photo of a face with big lips", "a photo of a face with small lips"),
    "Big_Nose": ("a photo of a face with a big nose", "a photo of a face with a small nose"),
    "Black_Hair": ("a photo of a person with black hair", "a photo of a person without black hair"),
    "Blond_Hair": ("a photo of a person with blond hair", "a photo of a person without blond hair"),
    "Blurry": ("a blurry photo of a face", "a sharp photo of a face"),
    "Brown_Hair": ("a photo of a person with brown hair", "a photo of a person without brown hair"),
    "Bushy_Eyebrows": ("a photo of a face with bushy eyebrows",
                       "a photo of a face with thin eyebrows"),
    "Chubby": ("a photo of a chubby face", "a photo of a slim face"),
    "Double_Chin": ("a photo of a face with a double chin",
                    "a photo of a face without a double chin"),
    "Eyeglasses": ("a photo of a face with eyeglasses", "a photo of a face without eyeglasses"),
    "Goatee": ("a photo of a face with a goatee", "a photo of a face without a goatee"),
    "Gray_Hair": ("a photo of a person with gray hair", "a photo of a person without gray hair"),
    "Heavy_Makeup": ("a photo of a face with heavy makeup", "a photo of a face without makeup"),
    "High_Cheekbones": ("a photo of a face with high cheekbones",
                        "a photo of a face with low cheekbones"),
    "Male": ("a photo of a man", "a photo of a woman"),
    "Mouth_Slightly_Open": ("a photo of a face with the mouth slightly open",
                            "a photo of a face with the mouth closed"),
    "Mustache": ("a photo of a face with a mustache", "a photo of a face without a mustache"),
    "Narrow_Eyes": ("a photo of a face with narrow eyes", "a photo of a face with wide eyes"),
    "No_Beard": ("a photo of a face without a beard", "a photo of a face with a beard"),
    "Oval_Face": ("a photo of an oval face", "a photo of a round face"),
    "Pale_Skin": ("a photo of a face with pale skin", "a photo of a face with tanned skin"),
    "Pointy_Nose": ("a photo of a face with a pointy nose",
                    "a photo of a face with a rounded nose"),
    "Receding_Hairline": ("a photo of a face with a receding hairline",
                          "a photo of a face with a full hairline"),
    "Rosy_Cheeks": ("a photo of a face with rosy cheeks", "a photo of a face with pale cheeks"),
    "Sideburns": ("a photo of a face with sideburns", "a photo of a face without sideburns"),
    "Smiling": ("a photo of a smiling face", "a photo of a face that is not smiling"),
    "Straight_Hair": ("a photo of a person with straight hair",
                      "a photo of a person with curly hair"),
    "Wavy_Hair": ("a photo of a person with wavy hair", "a photo of a person with straight hair"),
    "Wearing_Earrings": ("a photo of a person wearing earrings",
                         "a photo of a person not wearing earrings"),
    "Wearing_Hat": ("a photo of a person wearing a hat", "a photo of a person not wearing a hat"),
    "Wearing_Lipstick": ("a photo of a face wearing lipstick",
                         "a photo of a face without lipstick"),
    "Wearing_Necklace": ("a photo of a person wearing a necklace",
                         "a photo of a person not wearing a necklace"),
    "Wearing_Necktie": ("a photo of a person wearing a necktie",
                        "a photo of a person not wearing a necktie"),
    "Young": ("a photo of a young person", "a photo of an old person"),
}
assert len(PROMPTS) == 40  # CelebA's 40 binary attributes
