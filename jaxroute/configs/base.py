"""The default experiment: EquiRouter and the classic regressors on one dataset.

    python -m jaxroute.launch.train --config=jaxroute/configs/base.py:tiny --workdir=/tmp/w

``get_config(arg)``: ``arg`` is a comma list of ``tiny`` (CPU smoke size) and/or
``routerbench`` (the protocol of docs/method.md §6: MiniLM features of the prompts).
"""

from __future__ import annotations

import difflib

import ml_collections

from jaxroute.models.table import router_spec

#: The ``get_config`` args of the configs built on this one.
ARGS = ("tiny", "routerbench")


def check_args(arg: str | None, allowed) -> set[str]:
    """The comma list ``arg`` as a set; an unknown name is one line with the closest."""
    args = {a.strip() for a in (arg or "").split(",") if a.strip()}
    for a in sorted(args - set(allowed)):
        close = difflib.get_close_matches(a, list(allowed), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown config arg '{a}'{hint} (valid: {', '.join(allowed)})")
    return args


def router(model: str, loss: str = "mse", **fields) -> ml_collections.ConfigDict:
    """One router entry for router kind ``model`` of ``jaxroute.models.ROUTERS``.

    Trainable kinds get ``loss`` (a key of ``jaxroute.losses.LOSSES``), ``loss_kwargs``,
    ``model_kwargs`` (every field of the module, with its default, so that
    ``--config.routers.NAME.model_kwargs.FIELD=...`` works on a locked config), ``epochs``
    and ``learning_rate``; every kind gets its own ``fields`` from the table (kNN: ``k``,
    ``cost_source``). The table is read without importing Flax.
    """
    spec = router_spec(model)
    rc = ml_collections.ConfigDict()
    rc.model = model  # a key of jaxroute.models.ROUTERS
    if spec.trainable:
        rc.loss = loss  # a key of jaxroute.losses.LOSSES (unless the model has its own)
        kwargs = fields.pop("loss_kwargs", {})
        rc.loss_kwargs = ml_collections.ConfigDict(kwargs)  # loss keyword -> value
        # Loss hyper-parameters swept in one vmapped state: keyword -> H values (e.g.
        # {"rank_weight": (0.0, 1.0, 10.0, 50.0)}); the report gets NAME[keyword=value].
        grid = fields.pop("hparams", {})
        rc.hparams = ml_collections.ConfigDict(grid)  # loss keyword -> values, one copy each
        model_kwargs = dict(spec.model_kwargs)
        model_kwargs.update(fields.pop("model_kwargs", {}))
        rc.model_kwargs = ml_collections.ConfigDict(model_kwargs)
        rc.epochs = fields.pop("epochs", 0)  # 0: train.epochs
        rc.learning_rate = fields.pop("learning_rate", 0.0)  # 0: train.learning_rate
    for key, default in spec.fields.items():
        rc[key] = fields.pop(key, default)
    if fields:
        raise ValueError(f"router({model!r}): unknown fields {sorted(fields)}")
    return rc


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = check_args(arg, ARGS)
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict()
    c.data.path = "synthetic:n_prompts=4000"  # file/folder, or synthetic[:k=v,...]
    c.data.format = "auto"  # auto | a key of jaxroute.data.READERS (wide, long, ...)
    c.data.drop_incomplete = False  # drop samples with a model missing after merging
    c.data.split = "in_domain"  # in_domain | out_of_domain | predefined (jaxroute.data.SPLITS)
    c.data.train_fraction = 0.2  # in-domain: first fraction after a seeded shuffle
    c.data.test_tasks = ""  # out-of-domain: comma list of held-out tasks

    c.features = ml_collections.ConfigDict()
    c.features.source = "data"  # data (the dataset's own) | encoder (MiniLM) | file (.npy)
    c.features.path = ""  # source=file: a .npy with a .ids beside it
    c.features.encoder = ""  # source=encoder: a name of encoders.ENCODERS or an HF folder
    c.features.encoder_dir = ""  # older form of encoder ('' and encoder '' = all-MiniLM-L6-v2)
    c.features.cache_dir = ""  # feature cache ('' = ~/.cache/jaxroute/features)
    c.features.batch_size = 32  # prompts per encoder batch
    c.features.encoder_dtype = "auto"  # auto | float32 | bfloat16 (encoders.resolve_dtype)
    c.features.prompt_view = "full"  # full (as stored, docs/method.md §6) | question

    c.seeds = (42, 43, 44, 45, 46)  # one split + init + batch order per seed
    c.run_routers = ""  # comma list of router names to run ('' = all below)

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 5
    c.train.batch_size = 128
    c.train.learning_rate = 1e-4
    c.train.optimizer = "adam"  # adam | adamw | sgd
    c.train.weight_decay = 0.0
    c.train.schedule = "constant"  # constant | cosine
    c.train.warmup_steps = 0
    c.train.grad_clip = 0.0  # global-norm clip (0 = off)
    c.train.val_fraction = 0.0  # part of train held out (validation loss, eval.checkpoint)
    c.train.keep_checkpoints = 2  # latest N kept (plus the best by validation loss)

    c.cost_model = router("cost", "mse")  # the predicted cost of the budget rule
    c.cost_model.enabled = True  # False: route with the true costs

    c.routers = ml_collections.ConfigDict()
    c.routers.equirouter = router("equirouter", "equirouter")
    c.routers.equirouter_tb = router("equirouter", "equirouter_tb")
    c.routers.mlp = router("mlp", "mse", model_kwargs={"hidden_sizes": (256, 256)})
    c.routers.knn = router("knn", k=100)

    c.eval = ml_collections.ConfigDict()
    c.eval.grid = "orbit"  # orbit (predicted-cost quantiles) | log (shared log grid)
    c.eval.n_budgets = 100
    c.eval.strong_model = ""  # '' = the model of highest mean cost
    c.eval.split = "test"  # test | val (tuning: train.val_fraction > 0) | train (collapse)
    c.eval.checkpoint = "last"  # last epoch | best (lowest validation loss; val_fraction > 0)

    c.devices = ml_collections.ConfigDict()
    c.devices.data_parallel = True  # shard the batch axis over all devices
    c.devices.distributed = False  # call jax.distributed.initialize() (multi-host)

    if "routerbench" in args:
        c.data.path = ""  # must be given: --data_path=...
        c.features.source = "encoder"
    if "tiny" in args:
        c.data.path = "synthetic:n_prompts=400,feature_dim=16"
        c.seeds = (0, 1)
        c.train.epochs = 3
        c.train.batch_size = 32
        c.train.learning_rate = 1e-3
        for name in ("equirouter", "equirouter_tb"):
            c.routers[name].model_kwargs.update(
                {"trunk_sizes": (32, 16, 16), "embed_dim": 8, "head_size": 16}
            )
        c.routers.mlp.model_kwargs.hidden_sizes = (32,)
        c.routers.knn.k = 10
        c.eval.n_budgets = 30
    return c
