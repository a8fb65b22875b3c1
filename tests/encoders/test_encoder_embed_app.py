"""The embed app end to end on a tiny generic dataset and the tiny encoder."""

import numpy as np
from absl import flags
from absl.testing import flagsaver

from jaxroute import data as data_lib
from jaxroute import encoders
from jaxroute.launch import embed


def test_embed_app_writes_features_ids_and_cache(tmp_path, tiny_dir, tiny_encoder):
    data = data_lib.RoutingData(
        quality=[[1, 0], [0, 1], [1, 1]],
        cost=[[1e-3, 1e-4]] * 3,
        models=["big", "small"],
        tasks=["qa"] * 3,
        sample_ids=["q1", "q2", "q3"],
        prompts=["['Q: 2+2?', 'A:']", "Write a function.", "Bonjour !"],
    )
    folder = data_lib.write_generic(data, tmp_path / "data")
    out = tmp_path / "out.npy"
    flags.FLAGS.unparse_flags()
    argv = [
        "embed",
        f"--data_path={folder}",
        f"--output={out}",
        f"--encoder_dir={tiny_dir}",
        f"--cache_dir={tmp_path / 'cache'}",
    ]
    with flagsaver.flagsaver():
        flags.FLAGS(argv)
        embed.main([])
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (3, 16)
    np.testing.assert_allclose(x, tiny_encoder(list(data.prompts), progress=False), atol=1e-6)
    assert (tmp_path / "out.ids").read_text().split() == ["q1", "q2", "q3"]
    np.testing.assert_array_equal(encoders.load_features(out, sample_ids=data.sample_ids), x)
    assert list((tmp_path / "cache").glob("*/manifest.json"))


def test_embed_flags_do_not_clash_with_other_apps():
    # pytest --doctest-modules imports every app in one process: a flag name defined
    # twice raises DuplicateFlagError. (Static check: the apps' source.)
    import re
    from pathlib import Path

    folder = Path(embed.__file__).parent
    pattern = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"")
    ours = set(pattern.findall((folder / "embed.py").read_text()))
    assert ours >= {"output", "encoder_dir", "cache_dir"}
    for f in folder.glob("*.py"):
        if f.name != "embed.py":
            assert not ours & set(pattern.findall(f.read_text())), f
