"""Cheap features of the question text a router may add beside its embedding.

A table, name -> a deterministic function of the prompt string with a value in [0, 1]
(so that a block of them sits beside unit-length sentence vectors without swamping
them): :data:`QUESTION_FEATURES`. ``config.features.question_features`` names the ones
to append to the embedding (comma-separated, ``"all"`` for every one, ``""`` for none);
see :func:`with_question_features`.

A prompt may be plain text or a stringified Python list of strings (RouterBench's
form), whose line breaks are the two characters backslash and ``n``; both count as
line breaks here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

# A line break: a newline, or the escaped "\n" of a stringified list.
_BREAK = r"(?:\n|\\n)"
# An option label at the start of a line or list item ("A. ", "B) ") or in parentheses
# anywhere ("(C) ").
_OPTION = re.compile(
    rf"(?:(?:^|{_BREAK}|['\"],\s*['\"]|^\[['\"])\s*([A-Z])[.)]\s)|(?:\(([A-Z])\)\s)"
)
_CODE = re.compile(
    r"```|\bdef \w+\(|\breturn\b|#include\b|^\s*import \w+|\bimport \w+ as\b|"
    r"\bSELECT\b[\s\S]*\bFROM\b|\bfunction\s*\w*\s*\(|=>|\bprint\(|\bfor \w+ in \w+|"
    r"\bpublic static\b|[;{}]\s*" + _BREAK
)
# A LaTeX command, or one-line $...$ holding a backslash, caret, underscore or brace
# (not two prices: "$75 ... $3,225").
_LATEX = re.compile(
    r"\\(?:frac|sqrt|sum|int|cdot|times|alpha|beta|theta|pi)\b|\$[^$\n]*[\\^_{}][^$\n]*\$"
)
_SYMBOLS = frozenset("+-*/=<>^%\\{}|~")
_LOG_CHARS_CAP = math.log1p(20_000)  # prompts this long or longer give length 1
_LOG_WORDS_CAP = math.log1p(4_000)
_OPTIONS_CAP = 10  # A..J (MMLU-Pro's ten options)
_LINES_CAP = math.log1p(200)


def _length(p: str) -> float:
    return min(1.0, math.log1p(len(p)) / _LOG_CHARS_CAP)


def _words(p: str) -> float:
    return min(1.0, math.log1p(len(p.split())) / _LOG_WORDS_CAP)


def _lines(p: str) -> float:
    return min(1.0, math.log1p(len(re.findall(_BREAK, p))) / _LINES_CAP)


def option_count(p: str) -> int:
    """How many answer options the prompt lists: the longest run A, B, C, ... of option
    labels found (``"A. "``/``"A) "`` at a line or list-item start, or ``"(A) "``).

    >>> option_count("Pick one.\\nA. red\\nB. blue\\nC. green")
    3
    >>> option_count("['Which is a mammal? (A) shark (B) dolphin (C) trout (D) eel']")
    4
    >>> option_count("What is 2 + 2?"), option_count("Plan B) is fine")
    (0, 0)
    """
    letters = {a or b for a, b in _OPTION.findall(p)}
    n = 0
    while chr(ord("A") + n) in letters:
        n += 1
    return n


def _options(p: str) -> float:
    return min(option_count(p), _OPTIONS_CAP) / _OPTIONS_CAP


def _digits(p: str) -> float:
    return sum(c.isdigit() for c in p) / max(len(p), 1)


def _symbols(p: str) -> float:
    return sum(c in _SYMBOLS for c in p) / max(len(p), 1)


def _code(p: str) -> float:
    return 1.0 if _CODE.search(p) else 0.0


def _latex(p: str) -> float:
    return 1.0 if _LATEX.search(p.replace("\\n", "\n")) else 0.0


def _question_marks(p: str) -> float:
    return min(p.count("?"), 10) / 10


# name -> prompt -> value in [0, 1]. Add a feature here; nothing else changes.
QUESTION_FEATURES: dict[str, Callable[[str], float]] = {
    "length": _length,  # log(1 + characters), 1 at 20,000 characters
    "words": _words,  # log(1 + whitespace-separated words), 1 at 4,000 words
    "lines": _lines,  # log(1 + line breaks), 1 at 200
    "options": _options,  # answer options listed (option_count), / 10
    "digits": _digits,  # fraction of characters that are digits
    "symbols": _symbols,  # fraction of characters among + - * / = < > ^ % \ { } | ~
    "code": _code,  # 1 when the prompt holds code (fences, def/return, SQL, braces, ...)
    "latex": _latex,  # 1 when it holds LaTeX (\frac, \sqrt, $x^2$)
    "question_marks": _question_marks,  # "?" count, / 10, at most 1
}


def parse_names(spec: str | Sequence[str]) -> list[str]:
    """Feature names from a config value: ``"a,b"``, a list, ``"all"``, or ``""`` (none).

    Raises:
      ValueError: an unknown name (names the field and the known names).

    >>> parse_names("length, options"), parse_names(""), len(parse_names("all"))
    (['length', 'options'], [], 9)
    """
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if names == ["all"]:
        return list(QUESTION_FEATURES)
    bad = [n for n in names if n not in QUESTION_FEATURES]
    if bad:
        raise ValueError(
            f"config.features.question_features: unknown feature(s) {bad}; known: "
            f"{', '.join(QUESTION_FEATURES)} (or 'all')"
        )
    return names


def question_features(prompts: Sequence[str], names: str | Sequence[str] = "all") -> np.ndarray:
    """The features ``names`` (see :func:`parse_names`) of each prompt: float32 ``[N, F]``.

    >>> question_features(["What is 2 + 2?"], "digits,question_marks").tolist()
    [[0.1428571492433548, 0.10000000149011612]]
    """
    fns = [QUESTION_FEATURES[n] for n in parse_names(names)]
    out = np.zeros((len(prompts), len(fns)), np.float32)
    for i, p in enumerate(prompts):
        out[i] = [fn(p) for fn in fns]
    return out


def with_question_features(
    x: np.ndarray, prompts: Sequence[str], names: str | Sequence[str], weight: float = 1.0
) -> np.ndarray:
    """``x`` ``[N, D]`` with ``weight`` × the named features appended: ``[N, D + F]``
    (``x`` itself when no feature is named).

    Raises:
      ValueError: ``len(prompts)`` is not ``N``, or an unknown feature name.
    """
    names = parse_names(names)
    if not names:
        return x
    if len(prompts) != x.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {x.shape[0]} feature rows")
    extra = np.float32(weight) * question_features(prompts, names)
    return np.concatenate([np.asarray(x, np.float32), extra], axis=1)
