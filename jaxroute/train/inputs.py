"""The experiment's inputs: the data with its features, and the per-seed splits."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxroute import data as jdata
from jaxroute import encoders
from jaxroute.models.spec import resolve


def load_experiment_data(config) -> jdata.RoutingData:
    """Loads ``config.data`` and attaches features as ``config.features`` says."""
    dc, fc = config.data, config.features
    data = jdata.load_data(dc.path, dc.format, drop_incomplete=dc.drop_incomplete)
    source = fc.source
    if source == "data":
        if data.features is None:
            raise jdata.DataError(
                f"{data.source}: has no features; set --config.features.source=encoder "
                "(embed the prompts) or =file with --config.features.path"
            )
        return data
    view = fc.get("prompt_view", "full")
    encoder = encoders.config_encoder(fc)
    try:
        dtype = encoders.encoder_dtype(encoder, fc.get("encoder_dtype", "auto"))
    except ValueError as e:
        raise ValueError(f"config.features.encoder_dtype: {e}") from None
    encoded = data
    if source == "encoder" and view != "full" and data.prompts is not None:
        encoded = data.replace(prompts=encoders.apply_view(data.prompts.tolist(), view))
    feats = encoders.features_for(
        encoded,
        encoder_dir=encoder,
        cache_dir=fc.cache_dir or encoders.DEFAULT_CACHE_DIR,
        features_path=(fc.path or None) if source == "file" else None,
        batch_size=fc.batch_size,
        encoder_dtype=dtype,
    )
    return data.with_features(np.asarray(feats, np.float32))


@dataclasses.dataclass
class Splits:
    """Per-seed train / validation / test parts (lists of RoutingData, one per seed)."""

    seeds: list[int]
    train: list[jdata.RoutingData]
    val: list[jdata.RoutingData | None]
    test: list[jdata.RoutingData]

    def part(self, name: str) -> list[jdata.RoutingData]:
        """The K parts called ``name`` (test, val or train)."""
        if name not in ("test", "val", "train"):
            raise ValueError(f"config.eval.split must be test, val or train, got '{name}'")
        if name == "val" and self.val[0] is None:
            raise ValueError("config.eval.split='val' needs config.train.val_fraction > 0")
        return getattr(self, name)


def make_splits(config, data: jdata.RoutingData) -> Splits:
    """One train / validation / test split per seed, by ``jaxroute.data.SPLITS``."""
    dc = config.data
    seeds = [int(s) for s in config.seeds]
    if dc.split not in jdata.SPLITS:
        raise ValueError(f"config.data.split: unknown '{dc.split}' ({', '.join(jdata.SPLITS)})")
    spec = jdata.SPLITS[dc.split]
    shared = None if spec.seeded else spec.split(data, dc, seeds[0])
    train, val, test = [], [], []
    for s in seeds:
        tr, te = spec.split(data, dc, s) if spec.seeded else shared
        va = None
        if config.train.val_fraction > 0:
            tr, va = jdata.holdout(tr, config.train.val_fraction, s)
        train.append(tr)
        val.append(va)
        test.append(te)
    return Splits(seeds, train, val, test)


def stack(parts, field: str) -> np.ndarray:
    """One field of K same-size parts, stacked ``[K, N, ...]``."""
    return np.stack([getattr(p, field) for p in parts])


def host_arrays(parts, train=None, batch_fields=None) -> dict[str, np.ndarray]:
    """:func:`device_arrays` on the host (several processes shard batches from these)."""
    out = {
        "x": stack(parts, "features"),
        "quality": stack(parts, "quality"),
        "cost": stack(parts, "cost"),
    }
    for field, fn in (batch_fields or {}).items():
        fn = resolve(fn)
        out[field] = np.stack([np.asarray(fn(p, t)) for p, t in zip(parts, train, strict=True)])
    return out


def device_arrays(parts, train=None, batch_fields=None) -> dict[str, jax.Array]:
    """Features, quality and cost of K same-size parts, stacked ``[K, N, ...]``.

    ``batch_fields`` (name -> ``fn(part, train_part)``, from a router spec) adds more
    arrays, computed per seed with that seed's training part.
    """
    return jax.tree.map(jnp.asarray, host_arrays(parts, train, batch_fields))
