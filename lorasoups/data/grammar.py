"""The prompt-format grammar of Sclar et al. 2024 ("Quantifying Language Models' Sensitivity to
Spurious Features in Prompt Design", github.com/msclar/formatspread, MIT), reimplemented.

A :class:`PromptFormat` fixes, for a whole prompt, the casing of field descriptors, the separator
between a descriptor and its text, the space between fields, and for enumerated options the item
wrapper, numbering and label separator. :func:`sample_format` draws one with a seed under the
grammar's constraints; :func:`render` renders any list of fields in it; :data:`PAPER_FORMATS` are
the seven formats of the LoRA Soups prompt-robustness data, read off its files.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

CASINGS = ("unchanged", "title", "upper", "lower")
#: Descriptor-text separators; the empty one only for enumerations (a field would read "INPUT<text>").
SEPARATORS = ("", "::: ", ":: ", ": ", " \n\t", "\n    ", " : ", " - ", " ", "\n ", "\n\t", ":", "::", "- ", "\t")
#: Spaces between fields; " -- " is listed twice in the original, so it is drawn twice as often.
SPACES = ("", " ", "\n", " \n", " -- ", "  ", "; \n", " || ", " <sep> ", " -- ", ", ", " \n ", " , ", "\n ",
          ". ", " ,  ")
ITEM_WRAPPERS = ("(x)", "x.", "x)", "x )", "[x]", "<x>")
NUMBERINGS = ("arabic", "upper_letters", "lower_letters", "unicode_roman", "roman", "upper_roman")
ITEM_SEPARATORS = ("", " ", "  ", "\t")

_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii", "xiii", "xiv", "xv")
_UNICODE_ROMAN = tuple(chr(0x2160 + i) for i in range(12))  # Ⅰ .. Ⅻ
_NUMBERING_LIMIT = {"unicode_roman": 12, "roman": 15, "upper_roman": 15, "upper_letters": 26, "lower_letters": 26}


@dataclass(frozen=True)
class PromptFormat:
    """One point of the grammar: every choice shared across the prompt's fields."""

    casing: str = "unchanged"
    separator: str = ": "
    space: str = "\n"
    item_wrapper: str = "(x)"
    numbering: str = "arabic"
    item_separator: str = " "

    def __post_init__(self) -> None:
        for field, value, choices in (
            ("casing", self.casing, CASINGS),
            ("separator", self.separator, SEPARATORS),
            ("space", self.space, SPACES),
            ("item_wrapper", self.item_wrapper, ITEM_WRAPPERS),
            ("numbering", self.numbering, NUMBERINGS),
            ("item_separator", self.item_separator, ITEM_SEPARATORS),
        ):
            if value not in choices:
                raise ValueError(f"PromptFormat.{field}={value!r} is not in the grammar's choices {choices}")
        if self.separator == "":
            raise ValueError("PromptFormat.separator='' is only allowed inside enumerations")
        if "\n" in self.separator and "\n" not in self.space:
            raise ValueError(
                f"PromptFormat: separator {self.separator!r} has a newline, so the space between fields "
                f"must have one too (got {self.space!r})"
            )

    def case(self, descriptor: str) -> str:
        """A descriptor word in this format's casing."""
        return {"unchanged": descriptor, "title": descriptor.title(), "upper": descriptor.upper(),
                "lower": descriptor.lower()}[self.casing]

    def label(self, i: int) -> str:
        """The enumeration label of option ``i`` (0-based), wrapped: e.g. ``(A)``, ``iii.``."""
        limit = _NUMBERING_LIMIT.get(self.numbering)
        if limit is not None and i >= limit:
            raise ValueError(f"numbering {self.numbering!r} has only {limit} labels, option {i + 1} requested")
        raw = {
            "arabic": lambda: str(i + 1),
            "upper_letters": lambda: chr(ord("A") + i),
            "lower_letters": lambda: chr(ord("a") + i),
            "unicode_roman": lambda: _UNICODE_ROMAN[i],
            "roman": lambda: _ROMAN[i],
            "upper_roman": lambda: _ROMAN[i].upper(),
        }[self.numbering]()
        return self.item_wrapper.replace("x", raw)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def key(self) -> str:
        """A short, stable, human-readable identity (for result files and dataset ids)."""
        return repr((self.casing, self.separator, self.space, self.item_wrapper, self.numbering,
                     self.item_separator))


@dataclass(frozen=True)
class Field:
    """A prompt field: ``descriptor`` (None for bare text), its text, and optional enumerated options."""

    descriptor: str | None
    text: str = ""
    options: tuple[str, ...] = ()


def render_field(field: Field, fmt: PromptFormat) -> str:
    head = field.text if field.descriptor is None else f"{fmt.case(field.descriptor)}{fmt.separator}{field.text}"
    if not field.options:
        return head
    items = [f"{fmt.label(i)}{fmt.item_separator}{opt}" for i, opt in enumerate(field.options)]
    return fmt.space.join([head, *items]) if head else fmt.space.join(items)


def render(fields: Sequence[Field], fmt: PromptFormat) -> str:
    """Fields joined by the format's space, each rendered as descriptor + separator + text."""
    return fmt.space.join(render_field(f, fmt) for f in fields)


def sample_format(seed: int) -> PromptFormat:
    """A format drawn uniformly from the grammar's choices under its constraints, fixed by ``seed``."""
    rng = random.Random(seed)
    casing = rng.choice(CASINGS)
    separator = rng.choice([s for s in SEPARATORS if s])
    spaces = [s for s in SPACES if "\n" in s] if "\n" in separator else list(SPACES)
    return PromptFormat(
        casing=casing,
        separator=separator,
        space=rng.choice(spaces),
        item_wrapper=rng.choice(ITEM_WRAPPERS),
        numbering=rng.choice(NUMBERINGS),
        item_separator=rng.choice(ITEM_SEPARATORS),
    )


def sample_formats(n: int, seed: int, exclude: Sequence[PromptFormat] = ()) -> list[PromptFormat]:
    """``n`` distinct formats (as they render a simple field: casing, separator, space), seeded."""
    seen = {(f.casing, f.separator, f.space) for f in exclude}
    out: list[PromptFormat] = []
    rng = random.Random(seed)
    for _ in range(100 * n + 100):
        fmt = sample_format(rng.getrandbits(32))
        k = (fmt.casing, fmt.separator, fmt.space)
        if k not in seen:
            seen.add(k)
            out.append(fmt)
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} distinct formats")


#: The seven formats of the paper's prompt-robustness files (train 1, 2, 4; test 3, 7, 8, 10), read
#: off the rendered files in lorasoups-paper/prompt_formats (tests check they reproduce them).
PAPER_FORMATS: dict[int, PromptFormat] = {
    1: PromptFormat(casing="title", separator=": ", space="\n"),
    2: PromptFormat(casing="upper", separator="- ", space=" \n "),
    3: PromptFormat(casing="upper", separator="\t", space=" <sep> "),
    4: PromptFormat(casing="upper", separator="\n    ", space=" \n"),
    7: PromptFormat(casing="title", separator=" ", space=" \n"),
    8: PromptFormat(casing="lower", separator="\n    ", space="\n"),
    10: PromptFormat(casing="lower", separator=" \n\t", space="\n"),
}
PAPER_TRAIN_FORMATS = (1, 2, 4)
PAPER_TEST_FORMATS = (3, 7, 8, 10)
#: Formats drawn from the grammar where a setting needs more training formats than the paper released
#: (prompt_robustness_k4 trains on four): ``sample_formats(1, 161, exclude=PAPER_FORMATS.values())``,
#: written out so a change to the sampler cannot silently change the data (a test checks the draw).
GRAMMAR_FORMATS: dict[str, PromptFormat] = {
    "g1": PromptFormat(casing="title", separator=":: ", space=" \n ", item_wrapper="<x>", numbering="roman",
                       item_separator=" "),
}


def count_format(key: int | str) -> tuple[PromptFormat, str]:
    """The format called ``key`` (a paper format number or a :data:`GRAMMAR_FORMATS` name) and the
    label records carry in their ``format`` column (``paper-4``, ``grammar-g1``)."""
    if key in PAPER_FORMATS:
        return PAPER_FORMATS[key], f"paper-{key}"  # type: ignore[index]
    if key in GRAMMAR_FORMATS:
        return GRAMMAR_FORMATS[key], f"grammar-{key}"  # type: ignore[index]
    raise KeyError(f"unknown prompt format {key!r}; paper formats {sorted(PAPER_FORMATS)}, "
                   f"grammar formats {sorted(GRAMMAR_FORMATS)}")

#: SuperNaturalInstructions task 161, as worded in the paper's files.
COUNT_INSTRUCTION = "Please count the number of words in a sentence that contain the given letter."


def render_count_prompt(sentence: str, letter: str, fmt: PromptFormat) -> str:
    """Task 161 in ``fmt``, exactly as the paper's files render it (trailing blank line included)."""
    question = f"'{sentence}'. How many words contain the letter '{letter}' in the sentence."
    return f"{COUNT_INSTRUCTION} {render([Field('Sentence', question), Field('Answer', '')], fmt)}\n\n"
