"""The five captions of a shapes scene: relation, position, inventory, largest/occlusion and background."""

from __future__ import annotations

import numpy as np

from imagexplore.data.shapes.layout import Background
from imagexplore.data.shapes.render import TEXTURE_NAMES

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def scene_captions(
    rng: np.random.Generator, size: int, background: Background, objects: list[dict], label_j: int
) -> list[str]:
    """Five different sentences (relation, position, inventory, largest/occlusion, background).

    Each names the label object's colour and class; phrasings vary per scene.
    """
    S = size
    main = objects[label_j]
    min_area = max(4, 0.002 * S * S)  # objects smaller than this are not mentioned
    others = sorted(
        (o for j, o in enumerate(objects) if j != label_j and o["area"] >= min_area),
        key=lambda o: -o["area"],
    )

    def pick(*options: str) -> str:
        return options[int(rng.integers(len(options)))]

    def noun(o: dict, size: bool = True, pattern: bool = False) -> str:
        words = [o["size_word"]] if size else []
        if pattern and o["pattern"] != "solid":
            words.append({"stripes": "striped", "dots": "dotted"}[o["pattern"]])
        return " ".join([*words, o["colour"], o["class"]])

    x, y = main["centre"][0] / S, main["centre"][1] / S
    v = "top" if y < 0.38 else "bottom" if y > 0.62 else ""
    h = "left" if x < 0.38 else "right" if x > 0.62 else ""
    if v and h:
        where = f"in the {v} {h} corner"
    else:
        where = {"": "in the centre", "top": "at the top", "bottom": "at the bottom", "left": "on the left",
                 "right": "on the right"}[v or h]  # fmt: skip
    a_main, a_plain, a_big = (
        article(noun(main)),
        article(noun(main, False)),
        article(noun(main, False, True)),
    )

    caps = []
    if others:  # 1. relation to the next biggest object
        b = others[0]
        dx, dy = b["centre"][0] - main["centre"][0], b["centre"][1] - main["centre"][1]
        if abs(dx) > abs(dy):
            rel = "to the left of" if dx > 0 else "to the right of"
        else:
            rel = "above" if dy > 0 else "below"
        a_b = article(noun(b))
        caps.append(
            pick(f"{a_main} {rel} {a_b}.", f"{a_main} is {rel} {a_b}.", f"{rel} {a_b} there is {a_main}.")
        )
    else:
        caps.append(pick(f"{a_main} alone on the canvas.", f"just one {noun(main, False)}, {main['size_word']} and by itself."))  # fmt: skip
    # 2. position
    caps.append(pick(f"there is {a_plain} {where} of the image.", f"{a_plain} sits {where}.", f"{where} of the picture you can see {a_plain}."))  # fmt: skip
    # 3. inventory
    if others:
        items = [article(noun(o, size=False)) for o in [main, *others]]
        listing, count = ", ".join(items[:-1]) + " and " + items[-1], NUMBER_WORDS[len(items)]
        caps.append(pick(f"{count} shapes: {listing}.", f"the picture shows {count} shapes, {listing}."))
    else:
        caps.append(pick(f"the picture shows exactly one shape: {a_plain}.", f"a single {noun(main, False)} and nothing else."))  # fmt: skip
    # 4. the largest object, and what hides part of it
    hiders = [objects[j] for j in main["occluded_by"] if objects[j]["area"] >= min_area]
    if hiders and main["area"] < 0.95 * main["full_area"]:
        caps.append(f"the largest shape, {a_big}, is partly hidden behind {article(noun(hiders[0], False))}.")
    else:
        caps.append(pick(f"the biggest shape is {a_big}.", f"the largest object in the picture is {a_big}.", f"most of the space is taken by {a_big}."))  # fmt: skip
    # 5. the background
    bg = background
    tone = "dark" if bg.value < 0.45 else "light" if bg.value > 0.6 else "grey"
    bg_words = {"flat": f"plain {tone}", "gradient": "softly shaded", "noise": "mottled",
                "texture": f"{TEXTURE_NAMES[bg.texture]}-textured"}[bg.kind]  # fmt: skip
    caps.append(pick(f"{a_big} on {article(bg_words)} background.", f"on {article(bg_words)} background lies {a_big}."))  # fmt: skip
    return [c[0].upper() + c[1:] for c in caps]
