"""The benchmark app's human lines: rounded ratios, or why there is none."""

from jaxroute.launch.benchmark import BENCHMARKS, summary_line


def test_ratio_rounded_with_threads_and_checks():
    res = {
        "ratio": 1.6823820921,
        "what": "MiniLM prompts/s",
        "threads": 2,
        "parity_min_cosine": 0.99999988,
        "jaxroute_first_call_s": 29.0113,
    }
    assert summary_line("encoder", res) == (
        "encoder: ratio 1.68x (MiniLM prompts/s; threads 2; parity min cosine 0.9999999; "
        "jaxroute_first_call_s 29.0)"
    )


def test_no_ratio_says_why():
    res = {"ratio": None, "what": "x", "why": "no ratio: torch is not importable", "threads": 2}
    line = summary_line("equirouter_train", res)
    assert line == "equirouter_train: no ratio (x; no ratio: torch is not importable; threads 2)"
    assert "None" not in line


def test_final_loss_gap_and_table():
    res = {"ratio": 2.5, "final_loss_rel_gap": {"score_loss": 0.01234, "cost_loss": 0.5}}
    assert "score_loss 0.012, cost_loss 0.5" in summary_line("t", res)
    for name in ("encoder", "equirouter_train", "train_vmap"):
        assert callable(BENCHMARKS[name])


def test_train_vmap_line_has_vmap_ratio_and_loss_check():
    res = {"ratio": 1.004, "threads": 2, "vmap_ratio": 0.9344, "final_loss_max_rel_gap": 0.0}
    assert summary_line("train_vmap", res) == (
        "train_vmap: ratio 1.00x (threads 2; plain vmap 0.93x; final-loss max relative gap "
        "to the sequential runs 0)"
    )


def test_equirouter_train_line_has_bf16_beside_the_f32_ratio():
    res = {
        "ratio": 1.2049,
        "threads": 2,
        "bf16_ratio": 2.0149,
        "bf16_speedup": 1.6722,
        "bf16_final_loss_rel_gap": 0.000664,
        "f32_seed_rel_gap": 0.0028,
    }
    line = summary_line("equirouter_train", res)
    assert line.startswith("equirouter_train: ratio 1.20x (")  # the headline stays f32
    want = "bf16 matmuls 2.01x (1.67x f32; score-loss gap to f32 0.00066, f32 seed-to-seed 0.0028)"
    assert want in line
    res["bf16_ratio"] = None  # no torch: the bf16 speed-up alone
    assert "bf16 matmuls no ratio (1.67x f32;" in summary_line("equirouter_train", res)
