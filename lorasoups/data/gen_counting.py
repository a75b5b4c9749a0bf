"""Generated prompt-robustness setting: SuperNaturalInstructions task 161 (count the words of a
sentence that contain a given letter) on sentences from a built-in word list, in any format.
"""
from __future__ import annotations

import random

GENERATOR_VERSION = "counting-1"

ADJ = ("small", "red", "old", "wooden", "busy", "quiet", "large", "white", "clean", "sunny", "empty", "bright",
       "green", "tiny", "modern", "rusty")
NOUNS = ("dog", "kitchen", "train", "man", "woman", "cat", "table", "street", "bus", "bird", "boat", "pizza",
         "horse", "laptop", "window", "bench", "clock", "giraffe", "umbrella", "bicycle", "plate", "truck", "child")
VERBS = ("sitting", "standing", "parked", "walking", "resting", "waiting", "sleeping", "riding", "looking")
PREPS = ("on", "near", "next to", "in front of", "behind", "under", "beside", "inside")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_sentence(rng: random.Random) -> str:
    """A caption-like sentence (the paper's task-161 sentences are image captions)."""
    parts = ["a"]
    if rng.random() < 0.7:
        parts.append(rng.choice(ADJ))
    parts += [rng.choice(NOUNS), rng.choice(VERBS), rng.choice(PREPS), "a" if rng.random() < 0.5 else "the"]
    if rng.random() < 0.6:
        parts.append(rng.choice(ADJ))
    parts.append(rng.choice(NOUNS))
    if rng.random() < 0.4:
        parts += ["with", "a", rng.choice(ADJ), rng.choice(NOUNS)]
    return " ".join(parts)


def count_words_with(sentence: str, letter: str) -> int:
    return sum(1 for w in sentence.split() if letter in w)


def draw_count(rng: random.Random) -> dict[str, object]:
    sentence = make_sentence(rng)
    # Two thirds of letters come from the sentence, so answers are not mostly 0 (the paper's are 40 % 0).
    letter = rng.choice(sentence.replace(" ", "")) if rng.random() < 0.66 else rng.choice(LETTERS)
    return {"sentence": sentence, "letter": letter, "count": count_words_with(sentence, letter)}
