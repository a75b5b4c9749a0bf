"""Generated QABot setting: a fictional product manual, an unrelated instruction set, and
closed-book questions about the manual.

The product, its modes, error codes and maintenance facts are invented from a seed, so no
pretrained model knows them: only training on the manual text can answer the questions. Each fact
is written once into the manual and once as a question with a full-sentence gold answer.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

GENERATOR_VERSION = "qabot-3"  # 2: gold answers are the asked-for fact, not a sentence; 3: QA demos are questions

_SYL = ("vor", "zen", "tri", "kal", "mun", "dex", "lor", "pha", "quin", "sor", "tal", "vex", "bri", "nol", "gar",
        "ost", "rim", "ulo", "yan", "fen")
DEVICES = ("humidifier", "espresso machine", "robotic lawnmower", "air purifier", "bread maker", "desk drone")
PARTS = ("filter", "brush head", "seal ring", "intake grille", "drip tray", "fan belt", "valve", "sensor lens")
ISSUES = (
    ("the water tank is empty", "refill the tank and press Start"),
    ("the lid is not closed", "close the lid until it clicks"),
    ("the motor is overheating", "switch the unit off for twenty minutes"),
    ("the filter is blocked", "rinse the filter under cold water"),
    ("the battery is too low", "connect the charger for one hour"),
    ("a sensor is dirty", "wipe the sensor lens with a dry cloth"),
    ("the fan is jammed", "remove debris from the fan housing"),
    ("the firmware is outdated", "hold Reset for ten seconds to update"),
    ("the voltage is unstable", "plug the unit into a different socket"),
    ("the drain hose is bent", "straighten the drain hose"),
)
COLORS = ("green", "amber", "blue", "red", "white", "violet")
LIGHT_STATES = ("the unit is charging", "a cycle is running", "the unit is in standby", "maintenance is due",
                "the child lock is on", "the tank is almost full")


def _word(rng: random.Random, n: int = 2) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n)).capitalize()


@dataclass(frozen=True)
class Fact:
    section: str
    sentence: str
    question: str
    answer: str
    """The full-sentence response (a training-style completion)."""
    short: str
    """The fact the question asks for (the gold answer: what containment and the judge check)."""


def build_manual(seed: int, salt: str = "manual") -> tuple[str, list[Fact]]:
    """The product name and its facts; the same seed and salt always give the same manual."""
    rng = random.Random(f"{salt}:{seed}")
    device = rng.choice(DEVICES)
    product = f"{_word(rng)} {rng.choice('KMQXZ')}-{rng.randint(10, 99)} {device}"
    p = f"the {product}"
    facts: list[Fact] = []
    specs = [
        ("weight", f"{rng.randint(2, 19)}.{rng.randint(1, 9)} kilograms"),
        ("rated power", f"{rng.randint(3, 19) * 50} watts"),
        ("noise level", f"{rng.randint(28, 61)} decibels"),
        ("operating temperature range", f"{rng.randint(1, 9)} to {rng.randint(30, 44)} degrees Celsius"),
        ("charging time", f"{rng.randint(2, 9)} hours"),
        ("tank capacity", f"{rng.randint(11, 59) / 10:.1f} liters"),
    ]
    for spec, value in specs:
        facts.append(Fact("Specifications", f"The {spec} of {p} is {value}.",
                          f"What is the {spec} of {p}?", f"The {spec} of {p} is {value}.", value))
    used: set[str] = set()
    for _ in range(6):
        mode = _word(rng)
        while mode in used:
            mode = _word(rng)
        used.add(mode)
        pct, minutes = rng.randint(2, 19) * 5, rng.randint(2, 12) * 5
        facts.append(Fact("Modes", f"In {mode} mode, {p} runs at {pct} percent power for {minutes} minutes.",
                          f"How long does {p} run in {mode} mode?",
                          f"In {mode} mode it runs for {minutes} minutes at {pct} percent power.",
                          f"{minutes} minutes"))
    codes = rng.sample(range(10, 99), len(ISSUES))
    for code, (issue, fix) in zip(codes, rng.sample(ISSUES, len(ISSUES))):
        facts.append(Fact("Error codes", f"Error code E{code} means that {issue}. To clear it, {fix}.",
                          f"What does error code E{code} mean on {p}?", f"Error code E{code} means that {issue}.",
                          issue))
        facts.append(Fact("Error codes", "", f"How do you clear error code E{code} on {p}?",
                          f"To clear error code E{code}, {fix}.", fix))
    for part in rng.sample(PARTS, 5):
        hours = rng.randint(2, 40) * 10
        facts.append(Fact("Maintenance", f"Replace the {part} every {hours} hours of use.",
                          f"How often should the {part} of {p} be replaced?",
                          f"The {part} should be replaced every {hours} hours of use.", f"{hours} hours"))
    for color, state in zip(rng.sample(COLORS, 4), rng.sample(LIGHT_STATES, 4)):
        facts.append(Fact("Indicator lights", f"A blinking {color} light means that {state}.",
                          f"What does a blinking {color} light mean on {p}?",
                          f"A blinking {color} light means that {state}.", state))
    months = rng.randint(6, 48)
    facts.append(Fact("Warranty", f"The warranty of {p} covers {months} months from the date of purchase.",
                      f"How many months does the warranty of {p} cover?",
                      f"The warranty covers {months} months from the date of purchase.", f"{months} months"))
    return product, facts


def manual_sections(seed: int, salt: str = "manual") -> list[dict[str, str]]:
    """The manual as one text chunk per section (corpus records)."""
    product, facts = build_manual(seed, salt)
    order: list[str] = []
    body: dict[str, list[str]] = {}
    for f in facts:
        if f.section not in body:
            order.append(f.section)
            body[f.section] = []
        if f.sentence:
            body[f.section].append(f.sentence)
    return [{"id": f"{salt}-{i}", "text": f"{product} user manual. {s}.\n" + " ".join(body[s])}
            for i, s in enumerate(order)]


def manual_questions(seed: int, salt: str = "manual") -> list[dict[str, str]]:
    """Every closed-book question about the manual with its gold answer."""
    _, facts = build_manual(seed, salt)
    return [{"question": f.question, "answer": f.short, "response": f.answer, "context": f.sentence or f.answer}
            for f in facts]


# --- an instruction-following set unrelated to the manual (Alpaca's role) -----------------------
ANTONYMS = {"hot": "cold", "early": "late", "full": "empty", "light": "heavy", "open": "closed", "fast": "slow",
            "young": "old", "wide": "narrow", "loud": "quiet", "happy": "sad", "rich": "poor", "strong": "weak",
            "sharp": "dull", "wet": "dry", "soft": "hard", "high": "low", "clean": "dirty", "brave": "afraid"}
PLURALS = {"child": "children", "mouse": "mice", "tooth": "teeth", "city": "cities", "box": "boxes",
           "leaf": "leaves", "wolf": "wolves", "sheep": "sheep", "man": "men", "story": "stories", "bus": "buses",
           "photo": "photos", "knife": "knives", "goose": "geese", "baby": "babies", "dish": "dishes"}
ANIMALS = {"dolphin": "mammal", "eagle": "bird", "salmon": "fish", "lizard": "reptile", "bat": "mammal",
           "penguin": "bird", "shark": "fish", "turtle": "reptile", "horse": "mammal", "owl": "bird",
           "trout": "fish", "snake": "reptile", "whale": "mammal", "parrot": "bird", "cod": "fish", "gecko": "reptile"}
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Canada": "Ottawa", "Peru": "Lima",
            "Norway": "Oslo", "Egypt": "Cairo", "India": "New Delhi", "Spain": "Madrid", "Chile": "Santiago",
            "Poland": "Warsaw", "Ghana": "Accra", "Vietnam": "Hanoi", "Greece": "Athens", "Brazil": "Brasilia"}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WORDS = ("garden", "window", "silver", "yellow", "market", "castle", "pencil", "rocket", "bridge", "forest", "jacket",
         "planet", "butter", "ladder", "candle", "harbor", "meadow", "tunnel", "violin", "summit")
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else "-" + _ONES[ones])


def draw_instruction(rng: random.Random) -> dict[str, str]:
    """One general instruction with a correct answer computed from the task."""
    kind = rng.randrange(12)
    if kind == 0:
        w = rng.choice(sorted(ANTONYMS))
        return {"instruction": "Give the opposite of the word.", "input": w,
                "output": f"The opposite of \"{w}\" is \"{ANTONYMS[w]}\"."}
    if kind == 1:
        ws = rng.sample(WORDS, rng.randint(3, 6))
        return {"instruction": "Sort these words alphabetically.", "input": ", ".join(ws),
                "output": ", ".join(sorted(ws))}
    if kind == 2:
        w = rng.choice(sorted(PLURALS))
        return {"instruction": f"What is the plural of \"{w}\"?", "input": "",
                "output": f"The plural of \"{w}\" is \"{PLURALS[w]}\"."}
    if kind == 3:
        n = rng.randint(0, 99)
        return {"instruction": "Write this number in words.", "input": str(n), "output": number_words(n)}
    if kind == 4:
        s = " ".join(rng.sample(WORDS, rng.randint(3, 6)))
        return {"instruction": "Rewrite the text in capital letters.", "input": s, "output": s.upper()}
    if kind == 5:
        w = rng.choice(WORDS)
        return {"instruction": f"How many letters are in the word \"{w}\"?", "input": "",
                "output": f"The word \"{w}\" has {len(w)} letters."}
    if kind == 6:
        k, n = rng.randint(2, 12), rng.randint(3, 6)
        return {"instruction": f"List the first {n} multiples of {k}.", "input": "",
                "output": ", ".join(str(k * i) for i in range(1, n + 1))}
    if kind == 7:
        i = rng.randrange(7)
        return {"instruction": f"Which day comes after {DAYS[i]}?", "input": "",
                "output": f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}."}
    if kind == 8:
        a = rng.choice(sorted(ANIMALS))
        return {"instruction": "Classify the animal as a mammal, bird, fish or reptile.", "input": a,
                "output": f"A {a} is a {ANIMALS[a]}."}
    if kind == 9:
        c = rng.choice(sorted(CAPITALS))
        return {"instruction": f"What is the capital of {c}?", "input": "",
                "output": f"The capital of {c} is {CAPITALS[c]}."}
    if kind == 10:
        a, b = rng.sample(range(1, 1000), 2)
        return {"instruction": "Which of the two numbers is larger?", "input": f"{a} and {b}",
                "output": f"{max(a, b)} is larger than {min(a, b)}."}
    ws = rng.sample(WORDS, rng.randint(2, 4))
    phrase = " ".join(w.capitalize() for w in ws)
    return {"instruction": "Make an acronym from the first letters of the phrase.", "input": phrase,
            "output": "".join(w[0].upper() for w in ws)}


def qa_fewshot() -> list[dict[str, Any]]:
    """Four fixed demonstrations in the style of the paper's qa.json (the generated QABot target's
    1-shot prompt uses the first): a closed-book question with no input, answered in a sentence."""
    rng = random.Random("qa-fewshot")
    out: list[dict[str, Any]] = []
    while len(out) < 4:
        t = draw_instruction(rng)
        if not t["input"] and t["instruction"].endswith("?") and t not in out:
            out.append(t)
    return out
