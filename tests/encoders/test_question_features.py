"""Question features: known answers worked out by hand for each feature."""

import math

import numpy as np
import pytest

from jaxroute.encoders import _question_features as qf

MCQ = (
    "['A plot of land is sold for $75 a front foot. Compute the price.\\nA. $3,225.00"
    "\\nB. $75\\nC. $2,625.00\\nD. $7,500.00']"
)
CODE = "def fib(n):\n    a, b = 0, 1\n    return a\n"


def test_every_feature_on_known_prompts():
    # "What is 2 + 2?": 14 characters, 5 whitespace-separated words ("+" is one), no line
    # break, 2 digits, 1 symbol (+), 1 question mark.
    got = dict(zip(qf.QUESTION_FEATURES, qf.question_features(["What is 2 + 2?"])[0], strict=True))
    want = {
        "length": math.log(15) / math.log(20_001),
        "words": math.log(6) / math.log(4_001),
        "lines": 0.0,
        "options": 0.0,
        "digits": 2 / 14,
        "symbols": 1 / 14,
        "code": 0.0,
        "latex": 0.0,
        "question_marks": 0.1,
    }
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    "prompt, n",
    [
        (MCQ, 4),  # escaped line breaks of a stringified list
        ("Q?\nA) yes\nB) no", 2),
        ("['Which is a mammal? (A) shark (B) dolphin (C) trout (D) eel', 'A: (B)']", 4),
        ("['first item', 'A. one', 'B. two', 'C. three']", 3),  # list items
        ("Options B. and C. but no A", 0),  # no run starting at A
        ("Plan A) then B) then D)", 0),  # mid-sentence labels are not options
        ("x\nA. a\nB. b\nD. d", 2),  # the run stops at the gap
    ],
)
def test_option_count(prompt, n):
    assert qf.option_count(prompt) == n


def test_code_latex_and_lines():
    x = qf.question_features([CODE, MCQ, "Find $x^2 + \\frac{1}{2}$.", "plain words"], "all")
    col = {n: i for i, n in enumerate(qf.QUESTION_FEATURES)}
    assert x[:, col["code"]].tolist() == [1, 0, 0, 0]
    assert x[:, col["latex"]].tolist() == [0, 0, 1, 0]  # two prices are not LaTeX
    assert x[:, col["lines"]] == pytest.approx(
        [math.log(4) / math.log(201), math.log(5) / math.log(201), 0, 0]  # 3 and 4 breaks
    )
    assert x[1, col["options"]] == pytest.approx(0.4)
    assert ((x >= 0) & (x <= 1)).all()


def test_names_parsed_and_checked():
    assert qf.parse_names(" digits ,code") == ["digits", "code"]
    assert qf.parse_names(["length"]) == ["length"]
    assert qf.parse_names("") == [] and qf.parse_names("all") == list(qf.QUESTION_FEATURES)
    with pytest.raises(ValueError, match=r"question_features: unknown feature\(s\) \['lenght'\]"):
        qf.parse_names("lenght")


def test_appended_to_the_embedding():
    x = np.eye(2, 3, dtype=np.float32)
    prompts = ["What is 2 + 2?", CODE]
    out = qf.with_question_features(x, prompts, "code,question_marks", weight=0.5)
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_allclose(out[:, 3:], [[0.0, 0.05], [0.5, 0.0]])
    assert qf.with_question_features(x, prompts, "") is x
    with pytest.raises(ValueError, match="3 prompts for 2 feature rows"):
        qf.with_question_features(x, prompts + ["z"], "code")
