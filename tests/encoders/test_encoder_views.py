"""Prompt views: the question a few-shot prompt ends with."""

import pytest

from jaxroute.encoders import apply_view, question_view

FEW_SHOT = (
    "['Q: What is 1+1?\\nA) 2\\nB) 3\\nAnswer:\\nA\\n\\n"
    "Q: What is 2+2?\\nA) 3\\nB) 4\\nAnswer:\\nB\\n\\n"
    "Q: Which planet is red?\\nA) Mars\\nB) Venus\\nAnswer:']"
)


def test_question_view_keeps_the_last_block():
    assert question_view(FEW_SHOT) == "Q: Which planet is red?\nA) Mars\nB) Venus\nAnswer:"


def test_question_view_of_multi_turn_and_plain_prompts():
    assert question_view("['first turn', 'second turn']") == "second turn"
    assert question_view("no list here\n\nlast part") == "last part"
    assert question_view("[not a python list") == "[not a python list"
    assert question_view("['x'") == "['x'"


def test_apply_view():
    prompts = [FEW_SHOT, "plain"]
    assert apply_view(prompts, "full") == prompts
    assert apply_view(prompts, "question")[1] == "plain"
    with pytest.raises(ValueError, match="unknown prompt view"):
        apply_view(prompts, "tail")
