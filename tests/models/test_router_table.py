"""The router table: its defaults match the modules, configs read it without Flax, and
a new router is one module plus one table line (the README's example)."""

import dataclasses
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.configs.base import get_config, router
from jaxroute.models import MODELS, ROUTERS, RouterSpec
from jaxroute.train import evaluation, experiment


@pytest.mark.parametrize("name", sorted(MODELS))
def test_table_defaults_are_the_modules_own(name):
    fields = dataclasses.fields(MODELS[name])
    own = {
        f.name: f.default
        for f in fields
        if f.name not in ("num_models", "parent", "name") and f.default is not dataclasses.MISSING
    }
    assert dict(ROUTERS[name].model_kwargs) == own


@pytest.mark.slow
def test_configs_do_not_import_flax():
    code = "import sys; from jaxroute.configs import paper; paper.get_config(); "
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'jax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_knn_only_fields_live_on_knn_entries():
    c = get_config()
    assert c.routers.knn.cost_source == "own" and "k" in c.routers.knn
    assert "loss" not in c.routers.knn
    for name in ("equirouter", "mlp"):
        assert "k" not in c.routers[name] and "cost_source" not in c.routers[name]
    with pytest.raises(ValueError, match="unknown fields"):
        router("mlp", k=3)


# ---- the README's example: a router is one module (here in the test) + one table line.
class BiasRouter(nn.Module):
    """Scores every prompt the same: one learned score per model."""

    num_models: int
    start: float = 0.0

    @nn.compact
    def __call__(self, x, *, deterministic=True):
        b = self.param("b", nn.initializers.constant(self.start), (self.num_models,))
        return jnp.broadcast_to(b, x.shape[:-1] + (self.num_models,))


def mean_fit(train, rc):  # a router without gradient training: fit + predict
    return train.quality.mean(axis=0) * rc.scale


def mean_predict(state, x, rc):
    return np.broadcast_to(state, (x.shape[0], state.shape[0])), None  # None: cost model


@pytest.mark.slow
def test_a_new_router_is_one_table_line(tmp_path, monkeypatch):
    monkeypatch.setitem(ROUTERS, "bias", RouterSpec(module=BiasRouter, model_kwargs={"start": 0.0}))
    monkeypatch.setitem(
        ROUTERS, "mean", RouterSpec(fit=mean_fit, predict=mean_predict, fields={"scale": 1.0})
    )
    c = get_config("tiny")
    c.routers.bias = router("bias", "mse", learning_rate=0.05)
    c.routers.mean = router("mean")
    c.run_routers = "bias,mean"
    c.cost_model.enabled = False  # route with the true costs
    data = experiment.load_experiment_data(c)
    fitted = experiment.fit(c, tmp_path, data)
    assert set(fitted.groups) == {"bias"}  # mean does not train
    report = evaluation.evaluate_fitted(c, fitted, data, ["bias", "mean"], tmp_path)
    biases = np.asarray(fitted.groups["bias"][1]["params"]["b"])  # [K, M]
    for k, (train, test) in enumerate(zip(fitted.splits.train, fitted.splits.test, strict=True)):
        # At the largest budget every model is affordable: each router takes its argmax.
        for name, scores in (("bias", biases[k]), ("mean", train.quality.mean(0))):
            got = report["routers"][name]["seeds"][k]["quality_at_max_budget"]
            want = test.quality[:, int(np.argmax(scores))].astype(np.float64).mean()
            assert got == pytest.approx(want, rel=1e-12), name
    assert np.ptp(biases[0]) > 0  # the bias router trained away from its init
    assert jax.tree.leaves(fitted.groups["bias"][1])[0].shape[0] == len(c.seeds)
