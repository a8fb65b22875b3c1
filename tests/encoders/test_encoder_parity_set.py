"""Parity with sentence-transformers over every prompt of a real set (opt-in).

The issue's bar for an encoder of the table: min cosine >= 0.9999 to its reference
implementation over every prompt of a real set (docs/speed.md, the encoder section). A
real set is not part of the repository and embedding one takes minutes to an hour on a
CPU, so this runs only when asked::

    JAXROUTE_PARITY_DATA=/path/to/mmlupro_dev/mmlupro_dev_wide.csv \
    JAXROUTE_PARITY_ENCODER=all-mpnet-base-v2 \
        .venv/bin/python -m pytest -q -n 0 tests/encoders/test_encoder_parity_set.py

It skips when ``JAXROUTE_PARITY_DATA`` is unset, when torch or sentence-transformers is
not importable (the ``bench`` install, docs/speed.md), or when the encoder's weights are
not installed. ``JAXROUTE_PARITY_DTYPE`` picks the mode (default ``auto``: the encoder's
own default on this CPU).
"""

import os

import numpy as np
import pytest

from jaxroute import encoders
from jaxroute.data import load_data

pytestmark = pytest.mark.slow

DATA = os.environ.get("JAXROUTE_PARITY_DATA", "")
ENCODER = os.environ.get("JAXROUTE_PARITY_ENCODER", "all-mpnet-base-v2")
DTYPE = os.environ.get("JAXROUTE_PARITY_DTYPE", "auto")
BAR = 0.9999


def test_min_cosine_over_every_prompt_of_a_real_set(monkeypatch):
    if not DATA:
        pytest.skip("set JAXROUTE_PARITY_DATA to a dataset with prompts to run it")
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the folder is local; never the hub
    st = pytest.importorskip("sentence_transformers")
    try:
        enc = encoders.load_encoder(ENCODER, dtype=DTYPE)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = st.SentenceTransformer(str(enc.folder), device="cpu")
    assert model.max_seq_length == enc.max_length
    data = load_data(DATA)
    assert data.prompts is not None, f"{DATA}: no prompt column"
    prompts = sorted(set(data.prompts.tolist()))
    got = enc(prompts, progress=False)
    want = model.encode(prompts, batch_size=32, convert_to_numpy=True)
    assert got.shape == want.shape == (len(prompts), enc.dim)
    cos = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    worst = int(cos.argmin())
    assert cos.min() >= BAR, (
        f"{ENCODER} ({enc.dtype}) on {DATA}: min cosine {cos.min():.7f}, "
        f"{int((cos < BAR).sum())} of {len(prompts)} prompts below {BAR}; worst: "
        f"{prompts[worst][:200]!r}"
    )
