"""Generated hard-math-with-code setting, code side: Python function-writing instructions.

Lists, strings and arithmetic helpers, deliberately unrelated to word problems (the paper's Code
Alpaca skill). Each task is a code template; an example call is drawn at random and its result is
computed by running the reference code, so the shown example is correct by construction.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GENERATOR_VERSION = "code-1"

WORDS = ("river", "apple", "stone", "cloud", "tiger", "lemon", "piano", "orbit", "maple", "delta", "ember", "noble",
         "radar", "level", "civic", "kayak", "otter", "plaza", "quilt", "salsa")


@dataclass(frozen=True)
class CodeTask:
    names: tuple[str, ...]          # function-name choices
    asks: tuple[str, ...]           # instruction phrasings; {f} = function name, {p} = parameter, {k} = constant
    params: tuple[str, ...]         # parameter-name choices
    body: str                       # function body, {p} and {k} filled in
    arg: Callable[[random.Random], Any]
    k: Callable[[random.Random], int] = lambda rng: 0


def _ints(rng: random.Random) -> list[int]:
    return [rng.randint(-20, 50) for _ in range(rng.randint(3, 7))]


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def _words(rng: random.Random) -> list[str]:
    return rng.sample(WORDS, rng.randint(3, 6))


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(3, 6)))


def _small(rng: random.Random) -> int:
    return rng.randint(0, 12)


TASKS: tuple[CodeTask, ...] = (
    CodeTask(("sum_even", "add_evens", "even_total"), ("Write a Python function {f}({p}) that returns the sum of the even numbers in a list.", "Create a function {f} that takes a list of integers {p} and adds up only the even ones."),
             ("numbers", "nums", "values"), "total = 0\nfor x in {p}:\n    if x % 2 == 0:\n        total += x\nreturn total", _ints),
    CodeTask(("reverse_text", "reverse_string", "backwards"), ("Write a Python function {f}({p}) that returns the string reversed.", "Implement {f}, which takes a string {p} and returns its characters in reverse order."),
             ("text", "s", "word"), "return {p}[::-1]", _word),
    CodeTask(("count_vowels", "vowel_count"), ("Write a Python function {f}({p}) that counts the vowels in a string.", "Define {f}({p}) returning how many characters of {p} are vowels (a, e, i, o, u)."),
             ("text", "s"), "return sum(1 for c in {p}.lower() if c in 'aeiou')", _sentence),
    CodeTask(("largest", "max_value", "find_max"), ("Write a Python function {f}({p}) that returns the largest number in a list without using max().", "Implement {f} to find the biggest element of the list {p} with a loop."),
             ("numbers", "items", "values"), "best = {p}[0]\nfor x in {p}[1:]:\n    if x > best:\n        best = x\nreturn best", _ints),
    CodeTask(("factorial", "fact"), ("Write a Python function {f}({p}) that returns the factorial of a non-negative integer.", "Define {f}({p}) computing {p}! iteratively."),
             ("n", "num"), "result = 1\nfor i in range(2, {p} + 1):\n    result *= i\nreturn result", _small),
    CodeTask(("is_palindrome", "palindrome"), ("Write a Python function {f}({p}) that returns True if a word reads the same backwards.", "Implement {f}({p}) that checks whether the string {p} is a palindrome."),
             ("word", "text", "s"), "return {p} == {p}[::-1]", _word),
    CodeTask(("celsius_to_fahrenheit", "to_fahrenheit"), ("Write a Python function {f}({p}) that converts a temperature from Celsius to Fahrenheit.", "Define {f}({p}) returning {p} degrees Celsius in Fahrenheit."),
             ("celsius", "c", "temp"), "return {p} * 9 / 5 + 32", lambda rng: rng.randint(-30, 100)),
    CodeTask(("mean", "average"), ("Write a Python function {f}({p}) that returns the average of a list of numbers.", "Implement {f}({p}) computing the arithmetic mean of {p}."),
             ("numbers", "values", "data"), "return sum({p}) / len({p})", _ints),
    CodeTask(("long_words", "filter_long"), ("Write a Python function {f}({p}) that keeps only the words longer than {k} characters.", "Define {f}({p}) returning the words of the list {p} whose length is greater than {k}."),
             ("words", "items"), "return [w for w in {p} if len(w) > {k}]", _words, lambda rng: rng.randint(3, 5)),
    CodeTask(("squares", "square_all"), ("Write a Python function {f}({p}) that returns a list with every number squared.", "Implement {f}({p}) that maps each element of {p} to its square."),
             ("numbers", "nums", "xs"), "return [x * x for x in {p}]", _ints),
    CodeTask(("count_value", "occurrences"), ("Write a Python function {f}({p}) that counts how many times {k} appears in a list.", "Define {f}({p}) returning the number of elements of {p} equal to {k}."),
             ("numbers", "items"), "count = 0\nfor x in {p}:\n    if x == {k}:\n        count += 1\nreturn count",
             lambda rng: [rng.randint(0, 5) for _ in range(rng.randint(4, 9))], lambda rng: rng.randint(0, 5)),
    CodeTask(("join_words", "make_sentence"), ("Write a Python function {f}({p}) that joins a list of words with single spaces.", "Implement {f}({p}) returning the words in {p} separated by spaces."),
             ("words", "parts"), "return ' '.join({p})", _words),
    CodeTask(("gcd", "greatest_divisor"), ("Write a Python function {f}({p}) that returns the greatest common divisor of a pair of integers.", "Define {f}({p}) using Euclid's algorithm on the tuple {p}."),
             ("pair", "ab"), "a, b = {p}\nwhile b:\n    a, b = b, a % b\nreturn a", lambda rng: (rng.randint(2, 90), rng.randint(2, 90))),
    CodeTask(("fibonacci", "fib"), ("Write a Python function {f}({p}) that returns the n-th Fibonacci number (fib(0) = 0).", "Implement {f}({p}) computing Fibonacci numbers iteratively."),
             ("n", "k"), "a, b = 0, 1\nfor _ in range({p}):\n    a, b = b, a + b\nreturn a", lambda rng: rng.randint(0, 20)),
    CodeTask(("unique", "dedupe"), ("Write a Python function {f}({p}) that removes duplicates from a list but keeps the first order.", "Define {f}({p}) returning {p} without repeated elements, in order of first appearance."),
             ("items", "values"), "seen = set()\nout = []\nfor x in {p}:\n    if x not in seen:\n        seen.add(x)\n        out.append(x)\nreturn out",
             lambda rng: [rng.randint(0, 6) for _ in range(rng.randint(4, 9))]),
    CodeTask(("product", "multiply_all"), ("Write a Python function {f}({p}) that multiplies all numbers in a list.", "Implement {f}({p}) returning the product of the elements of {p}."),
             ("numbers", "factors"), "result = 1\nfor x in {p}:\n    result *= x\nreturn result", lambda rng: [rng.randint(1, 9) for _ in range(rng.randint(2, 5))]),
    CodeTask(("capitalize_words", "title_words"), ("Write a Python function {f}({p}) that capitalizes the first letter of every word in a sentence.", "Define {f}({p}) returning {p} with each word capitalized."),
             ("sentence", "text"), "return ' '.join(w[:1].upper() + w[1:] for w in {p}.split())", _sentence),
    CodeTask(("char_counts", "letter_frequency"), ("Write a Python function {f}({p}) that returns a dictionary counting each character of a string.", "Implement {f}({p}) mapping every character of {p} to how often it occurs."),
             ("text", "s"), "counts = {{}}\nfor c in {p}:\n    counts[c] = counts.get(c, 0) + 1\nreturn counts", _word),
    CodeTask(("second_largest", "runner_up"), ("Write a Python function {f}({p}) that returns the second largest distinct number in a list.", "Define {f}({p}) finding the second biggest distinct value of {p}."),
             ("numbers", "values"), "return sorted(set({p}))[-2]", lambda rng: rng.sample(range(-10, 60), rng.randint(3, 7))),
    CodeTask(("clamp", "limit"), ("Write a Python function {f}({p}) that limits a number to the range 0 to {k}.", "Implement {f}({p}) returning {p} clipped between 0 and {k}."),
             ("x", "value"), "return max(0, min({k}, {p}))", lambda rng: rng.randint(-50, 150), lambda rng: rng.randint(10, 100)),
    CodeTask(("add_constant", "shift_all"), ("Write a Python function {f}({p}) that adds {k} to every element of a list.", "Define {f}({p}) returning a new list with {k} added to each item of {p}."),
             ("numbers", "xs"), "return [x + {k} for x in {p}]", _ints, lambda rng: rng.randint(1, 20)),
    CodeTask(("flatten", "flatten_list"), ("Write a Python function {f}({p}) that flattens a list of lists into one list.", "Implement {f}({p}) concatenating the inner lists of {p}."),
             ("lists", "nested"), "out = []\nfor inner in {p}:\n    out.extend(inner)\nreturn out",
             lambda rng: [[rng.randint(0, 9) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(2, 4))]),
    CodeTask(("count_prefix", "starts_with_count"), ("Write a Python function {f}({p}) that counts the words in a list starting with the letter '{c}'.", "Define {f}({p}) returning how many strings in {p} begin with '{c}'."),
             ("words", "items"), "return sum(1 for w in {p} if w.startswith('{c}'))", _words, lambda rng: rng.randint(0, 25)),
    CodeTask(("index_of_min", "argmin"), ("Write a Python function {f}({p}) that returns the index of the smallest element of a list.", "Implement {f}({p}) giving the position of the minimum of {p}."),
             ("numbers", "values"), "best = 0\nfor i in range(1, len({p})):\n    if {p}[i] < {p}[best]:\n        best = i\nreturn best", _ints),
    CodeTask(("is_prime", "prime_check"), ("Write a Python function {f}({p}) that returns True if an integer is prime.", "Define {f}({p}) checking whether {p} is a prime number."),
             ("n", "num"), "if {p} < 2:\n    return False\nfor d in range(2, int({p} ** 0.5) + 1):\n    if {p} % d == 0:\n        return False\nreturn True",
             lambda rng: rng.randint(0, 100)),
)


def _fill(text: str, f: str, p: str, k: int) -> str:
    return text.replace("{f}", f).replace("{p}", p).replace("{k}", str(k)).replace("{c}", chr(ord("a") + k % 26)) \
        .replace("{{", "{").replace("}}", "}")


def draw_task(rng: random.Random) -> dict[str, Any]:
    """One instruction with an example call, and the reference function as the answer."""
    task = rng.choice(TASKS)
    f, p, k = rng.choice(task.names), rng.choice(task.params), task.k(rng)
    ask = _fill(rng.choice(task.asks), f, p, k)
    body = _fill(task.body, f, p, k)
    code = f"def {f}({p}):\n" + "\n".join("    " + line for line in body.splitlines())
    arg = task.arg(rng)
    ns: dict[str, Any] = {}
    exec(code, ns)  # noqa: S102 - our own fixed templates; computes the example's true result
    result = ns[f](arg)
    example = f"For example, {f}({arg!r}) should return {result!r}."
    return {"instruction": ask, "input": example, "output": code}
