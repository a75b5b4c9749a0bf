"""Generated reading-comprehension setting.

* Corpus (the biomedical-textbook skill): textbook paragraphs about invented biomedical terms,
  dense with jargon no model has seen.
* Open-book QA skill (SQuAD's role): questions on passages about unrelated invented towns, with
  span answers and some unanswerable questions ("Not in context", as SQuAD v2).
* Target (BioASQ's role): open-book questions whose contexts are abstracts about the jargon terms,
  written with other templates than the textbook.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

# reading-2 (the gate of seed 0 found reading-1's corpus of 60 paragraphs, ~4k tokens, one optimiser
# step in 2048-token blocks): 160 terms, each stated by three textbook paragraphs worded apart.
# reading-3: every disease and product name is drawn once (reading-2 gave 9 diseases and 14
# products to two terms each, so "X syndrome is caused by a loss of ..." taught contradictions)
GENERATOR_VERSION = "reading-3"
N_TERMS = 160  # the invented domain is fixed by the seed; sizes only truncate

_SYL = ("bra", "cel", "dor", "fy", "gli", "hep", "ixo", "kyr", "lum", "myo", "nep", "oph", "pyr", "quo", "rax",
        "sten", "thy", "urv", "vas", "zol")
_ENDS = ("in", "ase", "ocyte", "ide", "one", "ulin", "amine", "oma")
CLASSES = ("membrane protein", "signalling enzyme", "transport channel", "hormone", "structural fibre", "receptor")
ORGANS = ("liver", "retina", "inner ear", "kidney cortex", "spleen", "bone marrow", "lung lining", "skin")
ORGANISMS = ("humans", "mice", "zebrafish", "pigs", "frogs")
SUBSTRATES = ("glucose", "lactate", "urea", "cholesterol", "iron", "calcium", "retinol", "glycine")
SYMPTOMS = ("chronic fatigue", "blurred vision", "joint stiffness", "frequent fevers", "pale skin", "hearing loss")
SURNAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Alvarez", "Novak", "Haddad", "Kowalski", "Mensah", "Ivanova")


def _term(rng: random.Random, suffixes: tuple[str, ...]) -> str:
    return "".join(rng.choice(_SYL) for _ in range(2)) + rng.choice(suffixes)


@dataclass(frozen=True)
class Term:
    name: str
    klass: str
    organ: str
    organism: str
    partner: str
    substrate: str
    product: str
    disease: str
    symptom: str
    discoverer: str
    year: int


def lexicon(seed: int) -> list[Term]:
    rng = random.Random(f"lexicon:{seed}")
    names: list[str] = []
    while len(names) < 2 * N_TERMS:
        t = _term(rng, _ENDS)
        if t not in names:
            names.append(t)
    used = set(names)

    def fresh(suffixes: tuple[str, ...]) -> str:  # a name no other term, product or disease has
        while (name := _term(rng, suffixes)) in used:
            pass
        used.add(name)
        return name

    terms = []
    for i in range(N_TERMS):
        terms.append(Term(
            name=names[i], klass=rng.choice(CLASSES), organ=rng.choice(ORGANS), organism=rng.choice(ORGANISMS),
            partner=names[N_TERMS + i], substrate=rng.choice(SUBSTRATES), product=fresh(("ate", "ol", "ene")),
            disease=fresh(("osis", "itis", "emia")).capitalize() + " syndrome", symptom=rng.choice(SYMPTOMS),
            discoverer=rng.choice(SURNAMES), year=rng.randint(1931, 2019),
        ))
    return terms


def textbook_passages(t: Term) -> list[str]:
    """Three textbook paragraphs (corpus records) stating every fact about one term, worded apart:
    a fact seen in several phrasings is one a model can learn, not only a string it can recite."""
    name = t.name.capitalize()
    return [
        (f"{name} is a {t.klass} found in the {t.organ} of {t.organism}. It binds {t.partner} and "
         f"converts {t.substrate} into {t.product}. Loss of {t.name} causes {t.disease}, which is marked by "
         f"{t.symptom}. {name} was first described by {t.discoverer} in {t.year}."),
        (f"In the {t.organ}, the {t.klass} {t.name} pairs with {t.partner}; together they make {t.product} "
         f"out of {t.substrate}. {t.discoverer} reported it in {t.year}, working on {t.organism}. When {t.name} "
         f"is missing, {t.disease} follows, and {t.symptom} is its first sign."),
        (f"{t.disease} is caused by a loss of {t.name}, a {t.klass}, and shows itself as {t.symptom}. "
         f"{name} was discovered in {t.year} by {t.discoverer}. It occurs in the {t.organ} of {t.organism}, "
         f"where it attaches to {t.partner} and turns {t.substrate} into {t.product}."),
    ]


def abstract_passage(t: Term) -> str:
    """An abstract-style context about the same term (target contexts), worded differently."""
    return (f"We studied {t.name}, a {t.klass} of the {t.organ}. In {t.organism}, {t.name} forms a complex with "
            f"{t.partner}, and cells lacking it cannot turn {t.substrate} into {t.product}. Patients with "
            f"{t.disease} carry mutations in {t.name} and report {t.symptom}. The protein was named by "
            f"{t.discoverer} in {t.year}.")


def term_questions(t: Term) -> list[tuple[str, str]]:
    return [
        (f"Which molecule does {t.name} form a complex with?", t.partner),
        (f"In which organ is {t.name} found?", f"the {t.organ}"),
        (f"What do cells lacking {t.name} fail to produce from {t.substrate}?", t.product),
        (f"Which disease is linked to mutations in {t.name}?", t.disease),
        (f"What symptom do patients with {t.disease} report?", t.symptom),
        (f"Who named {t.name}?", t.discoverer),
        (f"In which year was {t.name} named?", str(t.year)),
    ]


# --- open-book QA on unrelated passages (SQuAD's role) ------------------------------------------
_TOWN = ("Ash", "Bel", "Cor", "Dun", "Eld", "Fair", "Glen", "Hal", "Ivy", "Kings", "Lark", "Mill", "North", "Oak")
_TOWN_END = ("ford", "haven", "brook", "field", "mouth", "stead", "wick", "ton", "bury", "moor")
RIVERS = ("Tessel", "Marrow", "Quill", "Ebbing", "Sallow", "Wend", "Corrie", "Dapple")
FESTIVALS = ("Lantern Fair", "Harvest Parade", "Kite Day", "Cheese Market", "Boat Race", "Music Week")
MONTHS = ("January", "March", "April", "June", "July", "September", "October", "December")
FOUNDERS = ("Edda Marsh", "Tomas Reed", "Ilse Varga", "Owen Pike", "Mira Holt", "Sven Dale", "Ana Brook")
INDUSTRIES = ("wool weaving", "glass making", "clock repair", "salt mining", "boat building", "apple farming")


def draw_town_question(rng: random.Random) -> dict[str, str]:
    town = rng.choice(_TOWN) + rng.choice(_TOWN_END)
    river, fest, month = rng.choice(RIVERS), rng.choice(FESTIVALS), rng.choice(MONTHS)
    founder, year, pop, industry = rng.choice(FOUNDERS), rng.randint(1100, 1899), rng.randint(2, 90) * 1000, \
        rng.choice(INDUSTRIES)
    context = (f"{town} is a town on the {river} River. It was founded in {year} by {founder}. The town is known "
               f"for {industry}, and about {pop} people live there. Every {month} it holds the {fest}.")
    qas = [
        (f"On which river is {town}?", f"the {river} River"),
        (f"When was {town} founded?", str(year)),
        (f"Who founded {town}?", founder),
        (f"What is {town} known for?", industry),
        (f"How many people live in {town}?", f"about {pop}"),
        (f"Which event does {town} hold every {month}?", f"the {fest}"),
        (f"In which month does {town} hold the {fest}?", month),
        (f"Who is the mayor of {town}?", "Not in context"),
        (f"What is the main railway station of {town} called?", "Not in context"),
    ]
    q, a = rng.choice(qas)
    return {"context": context, "question": q, "answer": a}
