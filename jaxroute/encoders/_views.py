"""Prompt views: which part of a stored prompt the sentence encoder reads.

MiniLM reads 256 tokens. A RouterBench 5-shot prompt starts with the same five solved
examples for every question of a task, so the first 256 tokens are identical across the
task and the question itself is cut off: on arc-challenge and winogrande every prompt
gets the same feature vector. ``question`` keeps what the prompt ends with: the last
turn of a stringified turn list, and of that its last blank-line-separated block.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

PROMPT_VIEWS = ("full", "question")


def question_view(prompt: str) -> str:
    """The last turn's last paragraph (the question of a few-shot prompt).

    >>> question_view("['Q: 1+1?\\\\nA: 2\\\\n\\\\nQ: 2+2?\\\\nA:']")
    'Q: 2+2?\\nA:'
    >>> question_view("Plain prompt")
    'Plain prompt'
    """
    text = prompt
    stripped = prompt.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            turns = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            turns = None
        if isinstance(turns, list | tuple) and turns and all(isinstance(t, str) for t in turns):
            text = turns[-1]
    blocks = [b.strip() for b in text.split("\n\n") if b.strip()]
    return blocks[-1] if blocks else text


def apply_view(prompts: Sequence[str], view: str) -> list[str]:
    """``prompts`` as the encoder should read them under ``view``."""
    if view not in PROMPT_VIEWS:
        raise ValueError(f"unknown prompt view '{view}'; choose one of {PROMPT_VIEWS}")
    if view == "full":
        return list(prompts)
    return [question_view(p) if isinstance(p, str) else p for p in prompts]
