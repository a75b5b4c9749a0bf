"""Generated hard-math-with-code setting, math side: templated word problems.

* Skill (``math_skill``): small numbers, step-by-step natural-language solution ending in
  "The answer is N." (what MetaMathQA/GSM8K teach).
* Target (``math_hard``): the same templates with large numbers, GSM-Hard's construction, answered
  by a program ``def solution(): ... return result`` (reference program + float gold).

A template is a question, a sampler of its numbers and a list of steps ``(var, expr, sentence)``;
the solution text, the reference program and the gold value all come from those steps, so they
cannot disagree. ``expr`` is Python over earlier names, evaluated with no builtins.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorasoups.data.formatting import format_number, pal_completion

GENERATOR_VERSION = "math-1"

NAMES = ("Ava", "Ben", "Carla", "Dev", "Elif", "Farid", "Gwen", "Hiro", "Ines", "Jonas", "Kemi", "Luca",
         "Mina", "Nils", "Oona", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Yara")
ITEMS = ("notebook", "apple", "pencil", "sticker", "candle", "mug", "scarf", "kite", "marker", "lemon")
PLANTS = ("tomato", "pepper", "tulip", "basil", "lettuce", "carrot")
VEHICLES = ("car", "bus", "train", "truck", "boat")


class Draw:
    """Number sampler handed to templates: ``n`` scales with difficulty, ``s`` never does."""

    def __init__(self, rng: random.Random, hard: bool) -> None:
        self.rng, self.hard = rng, hard

    def n(self, lo: int, hi: int) -> int:
        """A count-like number; in hard mode a large one (GSM-Hard swaps in 4-7 digit numbers)."""
        if self.hard:
            return self.rng.randint(lo * 10000 + 1, hi * 50000)
        return self.rng.randint(lo, hi)

    def s(self, lo: int, hi: int) -> int:
        """A small number that stays small (fractions, percentages, days in a week...)."""
        return self.rng.randint(lo, hi)

    def r(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, seq: tuple[str, ...]) -> str:
        return self.rng.choice(seq)

    def names(self, k: int = 2) -> list[str]:
        return self.rng.sample(NAMES, k)


@dataclass(frozen=True)
class Template:
    name: str
    question: str
    sample: Callable[[Draw], dict[str, Any]]
    steps: tuple[tuple[str, str, str], ...]


def _t(name: str, question: str, sample: Callable[[Draw], dict[str, Any]], *steps: tuple[str, str, str]) -> Template:
    return Template(name, question, sample, steps)


def _who(d: Draw) -> dict[str, Any]:
    a, b = d.names(2)
    return {"name": a, "name2": b}


def _shopping(d: Draw) -> dict[str, Any]:
    count, price = d.n(2, 9), d.s(2, 12)
    return {**_who(d), "item": d.pick(ITEMS), "count": count, "price": price, "paid": count * price + d.n(1, 30)}


def _savings(d: Draw) -> dict[str, Any]:
    weekly, weeks = d.n(3, 20), d.s(2, 12)
    return {**_who(d), "item": d.pick(ITEMS), "weekly": weekly, "weeks": weeks, "spent": d.r(1, weekly * weeks - 1)}


def _garden(d: Draw) -> dict[str, Any]:
    rows, per_row = d.s(2, 9), d.n(3, 12)
    return {**_who(d), "plant": d.pick(PLANTS), "rows": rows, "per_row": per_row, "dead": d.r(1, rows * per_row - 1)}


def _bakery(d: Draw) -> dict[str, Any]:
    per_box, boxes = d.s(2, 12), d.n(2, 15)
    return {"per_box": per_box, "muffins": per_box * boxes, "box_price": d.s(3, 15)}


def _reading(d: Draw) -> dict[str, Any]:
    per_day, days = d.n(5, 30), d.s(2, 9)
    return {**_who(d), "per_day": per_day, "days": days, "pages": per_day * days + d.n(10, 90)}


def _tank(d: Draw) -> dict[str, Any]:
    rate, minutes = d.n(2, 20), d.s(3, 30)
    return {"rate": rate, "capacity": rate * minutes, "clean_minutes": d.s(5, 20)}


def _groups(d: Draw) -> dict[str, Any]:
    size = d.s(2, 6)
    return {"classes": d.s(2, 8), "students": size * d.n(3, 6), "group_size": size}


def _average(d: Draw) -> dict[str, Any]:
    avg = d.n(20, 90)
    a, b = d.r(avg // 2, avg), d.r(avg // 2, avg)
    return {**_who(d), "score1": a, "score2": b, "score3": 3 * avg - a - b}


def _sharing(d: Draw) -> dict[str, Any]:
    each = d.n(4, 20)
    friends = d.s(2, 8)
    return {**_who(d), "item": d.pick(ITEMS), "friends": friends, "total": each * friends, "eaten": d.r(1, each - 1)}


def _marbles(d: Draw) -> dict[str, Any]:
    start, won = d.n(10, 60), d.n(2, 30)
    return {**_who(d), "start": start, "won": won, "lost": d.r(1, start + won - 1)}


def _discount(d: Draw) -> dict[str, Any]:
    return {"item": d.pick(ITEMS), "price": 20 * d.n(1, 20), "pct": 5 * d.s(1, 9)}


def _parking(d: Draw) -> dict[str, Any]:
    levels, spots = d.s(2, 6), d.n(10, 50)
    return {"levels": levels, "spots": spots, "taken": d.r(1, levels * spots - 1)}


TEMPLATES: tuple[Template, ...] = (
    _t("shopping_change",
       "{name} buys {count} {item}s at ${price} each and pays with ${paid}. How much change does {name} get back?",
       _shopping,
       ("cost", "count * price", "The {item}s cost {count} * {price} = {cost} dollars."),
       ("change", "paid - cost", "The change is {paid} - {cost} = {change} dollars.")),
    _t("two_leg_trip",
       "A {vehicle} travels at {speed1} miles per hour for {hours1} hours, then at {speed2} miles per hour for "
       "{hours2} hours. How many miles does it travel in total?",
       lambda d: {"vehicle": d.pick(VEHICLES), "speed1": d.n(20, 70), "hours1": d.s(1, 6), "speed2": d.n(20, 70),
                  "hours2": d.s(1, 6)},
       ("leg1", "speed1 * hours1", "The first part is {speed1} * {hours1} = {leg1} miles."),
       ("leg2", "speed2 * hours2", "The second part is {speed2} * {hours2} = {leg2} miles."),
       ("total", "leg1 + leg2", "In total it travels {leg1} + {leg2} = {total} miles.")),
    _t("ages",
       "{name} is {age} years old. {name2} is {gap} years older than {name}. How old will {name2} be in {years} "
       "years?",
       lambda d: {**_who(d), "age": d.n(5, 40), "gap": d.n(1, 25), "years": d.s(1, 15)},
       ("age2", "age + gap", "{name2} is {age} + {gap} = {age2} years old now."),
       ("future", "age2 + years", "In {years} years {name2} will be {age2} + {years} = {future}.")),
    _t("work_pay",
       "{name} works {hours} hours a day for {days} days and earns ${rate} per hour. How much does {name} earn?",
       lambda d: {**_who(d), "hours": d.s(2, 10), "days": d.n(2, 20), "rate": d.s(8, 30)},
       ("total_hours", "hours * days", "{name} works {hours} * {days} = {total_hours} hours."),
       ("pay", "total_hours * rate", "{name} earns {total_hours} * {rate} = {pay} dollars.")),
    _t("fraction_given",
       "{name} baked {total} cookies and gave away {num}/{den} of them. How many cookies are left?",
       lambda d: (lambda den: {**_who(d), "den": den, "num": d.r(1, den - 1), "total": den * d.n(2, 15)})(d.s(2, 6)),
       ("given", "total * num // den", "{name} gave away {total} * {num} / {den} = {given} cookies."),
       ("left", "total - given", "{total} - {given} = {left} cookies are left.")),
    _t("percent_discount",
       "A {item} costs ${price}. It is on sale for {pct}% off. What is the sale price in dollars?",
       _discount,
       ("discount", "price * pct / 100", "The discount is {price} * {pct} / 100 = {discount} dollars."),
       ("sale", "price - discount", "The sale price is {price} - {discount} = {sale} dollars.")),
    _t("savings",
       "{name} saves ${weekly} every week for {weeks} weeks, then spends ${spent} on a {item}. How much money does "
       "{name} have left?",
       _savings,
       ("saved", "weekly * weeks", "{name} saves {weekly} * {weeks} = {saved} dollars."),
       ("left", "saved - spent", "{name} has {saved} - {spent} = {left} dollars left.")),
    _t("garden_rows",
       "{name} plants {rows} rows of {plant} plants with {per_row} plants in each row. Then {dead} plants die. How "
       "many plants are left?",
       _garden,
       ("planted", "rows * per_row", "{name} plants {rows} * {per_row} = {planted} plants."),
       ("left", "planted - dead", "{planted} - {dead} = {left} plants are left.")),
    _t("bakery_boxes",
       "A bakery makes {muffins} muffins and packs them in boxes of {per_box}. Each box sells for ${box_price}. How "
       "much money does the bakery make?",
       _bakery,
       ("boxes", "muffins // per_box", "There are {muffins} / {per_box} = {boxes} boxes."),
       ("money", "boxes * box_price", "The bakery makes {boxes} * {box_price} = {money} dollars.")),
    _t("reading_pages",
       "A book has {pages} pages. {name} reads {per_day} pages a day for {days} days. How many pages are left?",
       _reading,
       ("read", "per_day * days", "{name} reads {per_day} * {days} = {read} pages."),
       ("left", "pages - read", "{pages} - {read} = {left} pages are left.")),
    _t("tank_fill",
       "A tank holds {capacity} liters. A pump fills it at {rate} liters per minute, and cleaning the tank first "
       "takes {clean_minutes} minutes. How many minutes does the whole job take?",
       _tank,
       ("fill_minutes", "capacity // rate", "Filling takes {capacity} / {rate} = {fill_minutes} minutes."),
       ("total", "fill_minutes + clean_minutes", "The job takes {fill_minutes} + {clean_minutes} = {total} minutes.")),
    _t("classroom_groups",
       "A school has {classes} classes with {students} students each. The students form groups of {group_size}. "
       "How many groups are there?",
       _groups,
       ("pupils", "classes * students", "There are {classes} * {students} = {pupils} students."),
       ("groups", "pupils // group_size", "They form {pupils} / {group_size} = {groups} groups.")),
    _t("recipe_sugar",
       "A cake needs {per_cake} grams of sugar. {name} bakes {cakes} cakes and already has {have} grams of sugar. "
       "How many more grams does {name} need?",
       lambda d: (lambda per, cakes: {**_who(d), "per_cake": per, "cakes": cakes, "have": d.r(1, per * cakes - 1)})(
           d.n(20, 100), d.s(2, 9)),
       ("needed", "per_cake * cakes", "{name} needs {per_cake} * {cakes} = {needed} grams."),
       ("more", "needed - have", "{name} needs {needed} - {have} = {more} more grams.")),
    _t("overtime",
       "{name} earns ${rate} per hour for the first {base_hours} hours of a week and ${ot_rate} per hour after that. "
       "This week {name} worked {base_hours} hours plus {extra} extra hours. How much did {name} earn?",
       lambda d: {**_who(d), "rate": d.s(10, 25), "base_hours": d.n(20, 40), "ot_rate": d.s(26, 40),
                  "extra": d.n(1, 12)},
       ("base_pay", "rate * base_hours", "Regular pay is {rate} * {base_hours} = {base_pay} dollars."),
       ("extra_pay", "ot_rate * extra", "Extra pay is {ot_rate} * {extra} = {extra_pay} dollars."),
       ("total", "base_pay + extra_pay", "{name} earned {base_pay} + {extra_pay} = {total} dollars.")),
    _t("equal_sharing",
       "{name} has {total} {item}s and shares them equally among {friends} friends. Each friend then loses {eaten}. "
       "How many {item}s does each friend have?",
       _sharing,
       ("each", "total // friends", "Each friend gets {total} / {friends} = {each}."),
       ("left", "each - eaten", "Each friend has {each} - {eaten} = {left} left.")),
    _t("parking_lot",
       "A parking garage has {levels} levels with {spots} spots on each level. {taken} spots are taken. How many "
       "spots are free?",
       _parking,
       ("all_spots", "levels * spots", "There are {levels} * {spots} = {all_spots} spots."),
       ("free", "all_spots - taken", "{all_spots} - {taken} = {free} spots are free.")),
    _t("water_weeks",
       "{name} drinks {per_day} glasses of water a day. How many glasses does {name} drink in {weeks} weeks?",
       lambda d: {**_who(d), "per_day": d.n(2, 12), "weeks": d.s(2, 10)},
       ("days", "weeks * 7", "{weeks} weeks have {weeks} * 7 = {days} days."),
       ("glasses", "days * per_day", "{name} drinks {days} * {per_day} = {glasses} glasses.")),
    _t("stamps_times",
       "{name} has {stamps} stamps. {name2} gives {name} {times} times as many stamps as {name} already has. How "
       "many stamps does {name} have now?",
       lambda d: {**_who(d), "stamps": d.n(5, 60), "times": d.s(2, 5)},
       ("gift", "stamps * times", "{name2} gives {stamps} * {times} = {gift} stamps."),
       ("total", "stamps + gift", "{name} has {stamps} + {gift} = {total} stamps.")),
    _t("library_books",
       "A library has {shelves} shelves with {per_shelf} books on each shelf. It buys {bought} new books. How many "
       "books does it have now?",
       lambda d: {"shelves": d.s(3, 20), "per_shelf": d.n(10, 60), "bought": d.n(5, 90)},
       ("books", "shelves * per_shelf", "It has {shelves} * {per_shelf} = {books} books on shelves."),
       ("total", "books + bought", "Now it has {books} + {bought} = {total} books.")),
    _t("marbles",
       "{name} had {start} marbles, won {won} more in a game, then lost {lost}. How many marbles does {name} have?",
       _marbles,
       ("after_win", "start + won", "After winning {name} has {start} + {won} = {after_win}."),
       ("left", "after_win - lost", "After losing {name} has {after_win} - {lost} = {left}.")),
    _t("theater_tickets",
       "A theater sells {adults} adult tickets at ${adult_price} and {children} child tickets at ${child_price}. "
       "How much money does it take in?",
       lambda d: {"adults": d.n(10, 90), "adult_price": d.s(8, 20), "children": d.n(5, 60), "child_price": d.s(3, 7)},
       ("adult_money", "adults * adult_price", "Adult tickets bring {adults} * {adult_price} = {adult_money} dollars."),
       ("child_money", "children * child_price",
        "Child tickets bring {children} * {child_price} = {child_money} dollars."),
       ("total", "adult_money + child_money", "In total {adult_money} + {child_money} = {total} dollars.")),
    _t("fence_cost",
       "A rectangular garden is {length} meters long and {width} meters wide. Fencing costs ${cost} per meter. How "
       "much does it cost to fence the garden?",
       lambda d: {"length": d.n(5, 40), "width": d.n(3, 30), "cost": d.s(2, 9)},
       ("perimeter", "2 * (length + width)", "The perimeter is 2 * ({length} + {width}) = {perimeter} meters."),
       ("price", "perimeter * cost", "The fence costs {perimeter} * {cost} = {price} dollars.")),
    _t("average_score",
       "{name} scored {score1}, {score2} and {score3} points in three games. What is {name}'s average score?",
       _average,
       ("total", "score1 + score2 + score3", "The total is {score1} + {score2} + {score3} = {total}."),
       ("average", "total / 3", "The average is {total} / 3 = {average}.")),
    _t("practice_minutes",
       "{name} practices piano for {hours} hours and {minutes} minutes every day. How many minutes does {name} "
       "practice in {days} days?",
       lambda d: {**_who(d), "hours": d.s(1, 3), "minutes": d.s(5, 55), "days": d.n(2, 30)},
       ("per_day", "hours * 60 + minutes", "Each day is {hours} * 60 + {minutes} = {per_day} minutes."),
       ("total", "per_day * days", "In {days} days that is {per_day} * {days} = {total} minutes.")),
    _t("fruit_crates",
       "A farm packs {crates} crates with {per_crate} {item}s each. It sells {sold} crates. How many {item}s are "
       "still on the farm?",
       lambda d: (lambda crates: {"item": d.pick(("apple", "lemon", "pear", "peach")), "crates": crates,
                                  "per_crate": d.s(6, 30), "sold": d.r(1, crates - 1)})(d.n(3, 40)),
       ("left_crates", "crates - sold", "{crates} - {sold} = {left_crates} crates are left."),
       ("fruit", "left_crates * per_crate", "They hold {left_crates} * {per_crate} = {fruit} {item}s.")),
)


def _solve(t: Template, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    env = dict(values)
    sentences = []
    for var, expr, sentence in t.steps:
        nums = {k: v for k, v in env.items() if isinstance(v, (int, float))}
        env[var] = eval(expr, {"__builtins__": {}}, nums)  # noqa: S307 - our own fixed expressions
        shown = {k: format_number(v) if isinstance(v, (int, float)) else v for k, v in env.items()}
        sentences.append(sentence.format(**shown))
    return env, sentences


def instance(t: Template, rng: random.Random, hard: bool) -> dict[str, Any]:
    """One problem: question, NL solution, reference program, gold answer (float)."""
    values = t.sample(Draw(rng, hard))
    env, sentences = _solve(t, values)
    answer = float(env[t.steps[-1][0]])
    question = t.question.format(**values)
    inputs = [k for k, v in values.items() if isinstance(v, int) and "{" + k + "}" in t.question]
    lines = ["def solution():", f'    """{question}"""']
    lines += [f"    {k} = {values[k]}" for k in inputs]
    lines += [f"    {var} = {expr}" for var, expr, _ in t.steps]
    lines += [f"    result = {t.steps[-1][0]}", "    return result"]
    return {
        "template": t.name,
        "question": question,
        "solution": " ".join(sentences) + f"\nThe answer is {format_number(answer)}.",
        "code": "\n".join(lines),
        "target": answer,
    }


def draw_problem(rng: random.Random, hard: bool) -> dict[str, Any]:
    return instance(rng.choice(TEMPLATES), rng, hard)


def pal_demo_records(n: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Small-number PAL demonstrations (instruction + program completion) for the generated target."""
    rng = random.Random(f"pal-demos:{seed}")
    out = []
    for i in range(n):
        p = instance(TEMPLATES[i % len(TEMPLATES)], rng, hard=False)
        out.append({"id": f"pal_demo-{i}", "instruction": p["question"], "completion": pal_completion(p["code"]),
                    "answer": format_number(p["target"])})
    return out
