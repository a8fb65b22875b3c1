"""A trained run's encoder mode travels with it: route/serve embed as training did."""

import json
import shutil

import pytest

from jaxroute import encoders, serving
from jaxroute.train import read_config

# The session workdir of tests/serving/conftest.py: trained once, on the serving worker.
pytestmark = pytest.mark.xdist_group("serving")
pytestmark = [pytestmark, pytest.mark.slow]  # docs/testing.md


def test_run_records_and_router_uses_the_training_encoder_mode(workdir, tmp_path):
    info = json.loads((workdir / "run_info.json").read_text())
    trained_with = encoders.resolve_dtype("auto")  # the tiny run's config says "auto"
    assert json.loads((workdir / "config.json").read_text())["features"]["encoder_dtype"] == "auto"
    assert info["encoder_dtype"] == trained_with
    assert serving.load_router(workdir).encoder_dtype == trained_with
    # which encoder made the features: run_info.json and report.json say the same
    assert (info["encoder"], info["architecture"], info["dim"]) == ("all-MiniLM-L6-v2", "bert", 384)
    assert (info["pooling"], info["normalize"]) == ("mean", True)
    # The same run read on a machine where "auto" resolves otherwise keeps its mode.
    other = {"float32": "bfloat16", "bfloat16": "float32"}[trained_with]
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    (copy / "run_info.json").write_text(json.dumps({**info, "encoder_dtype": other}))
    assert read_config(copy).features.encoder_dtype == other
    assert serving.load_router(copy).encoder_dtype == other
    # A run from before the field (no mode anywhere) embedded in float32.
    del info["encoder_dtype"]
    (copy / "run_info.json").write_text(json.dumps(info))
    cfg = json.loads((copy / "config.json").read_text())
    del cfg["features"]["encoder_dtype"]
    (copy / "config.json").write_text(json.dumps(cfg))
    assert serving.load_router(copy).encoder_dtype == "float32"
