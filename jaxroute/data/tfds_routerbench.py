"""A TFDS dataset builder for RouterBench, stored as array_record (no TensorFlow needed).

Configs: ``0shot`` and ``5shot`` read the official pickles (``routerbench_0shot.pkl`` /
``routerbench_5shot.pkl``, or any wide-form file/folder) from the manual dir;
``synthetic`` writes the built-in synthetic benchmark. Read back with
:func:`load_tfds` (``tfds:routerbench/5shot@DATA_DIR`` in ``--data_path``).

    builder = RouterBench(config="5shot", data_dir=D)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=M),
        file_format="array_record")
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from jaxroute.data._readers import read_files
from jaxroute.data._synthetic import synthetic
from jaxroute.data._types import DataError, RoutingData

_PICKLES = {"0shot": "routerbench_0shot.pkl", "5shot": "routerbench_5shot.pkl"}


class RouterBench(tfds.core.GeneratorBasedBuilder):
    """RouterBench quality and cost per (prompt, model); one example per prompt."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="0shot", description="RouterBench 0-shot (manual pickle)"),
        tfds.core.BuilderConfig(name="5shot", description="RouterBench 5-shot (manual pickle)"),
        tfds.core.BuilderConfig(name="synthetic", description="jaxroute synthetic benchmark"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place routerbench_0shot.pkl / routerbench_5shot.pkl (or wide-form csv/parquet "
        "files) in the manual dir (--data.manual_dir / DownloadConfig(manual_dir=...))."
    )

    def __init__(self, *args, synthetic_prompts: int = 2000, **kwargs):
        self._synthetic_prompts = synthetic_prompts
        self._routing: RoutingData | None = None
        super().__init__(*args, **kwargs)

    def _load(self, dl_manager) -> RoutingData:
        if self._routing is None:
            if self.builder_config.name == "synthetic":
                self._routing = synthetic(n_prompts=self._synthetic_prompts, seed=0)
            else:
                manual = pathlib.Path(dl_manager.manual_dir)
                pkl = manual / _PICKLES[self.builder_config.name]
                self._routing = read_files(pkl if pkl.exists() else manual)
        return self._routing

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "index": tfds.features.Scalar(dtype=np.int64),
                    "sample_id": tfds.features.Text(),
                    "eval_name": tfds.features.Text(),
                    "prompt": tfds.features.Text(),
                    "quality": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "cost": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "features": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        data = self._load(dl_manager)
        self.info.metadata["models"] = list(data.models)
        return {"full": self._generate_examples(data)}

    def _generate_examples(self, data: RoutingData):
        empty = np.zeros((0,), np.float32)
        for i in range(data.num_prompts):
            yield (
                str(data.sample_ids[i]),
                {
                    "index": i,
                    "sample_id": str(data.sample_ids[i]),
                    "eval_name": str(data.tasks[i]),
                    "prompt": "" if data.prompts is None else str(data.prompts[i]),
                    "quality": data.quality[i],
                    "cost": data.cost[i],
                    "features": empty if data.features is None else data.features[i],
                },
            )


def prepare(config: str, data_dir: str, manual_dir: str | None = None, **kwargs) -> RouterBench:
    """Builds the array_record files of ``config`` under ``data_dir``."""
    builder = RouterBench(config=config, data_dir=data_dir, **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
        file_format="array_record",
    )
    return builder


def load_tfds(spec: str) -> RoutingData:
    """``routerbench/5shot@DATA_DIR`` -> RoutingData via ``as_data_source``."""
    name, _, data_dir = spec.partition("@")
    _, _, config = name.partition("/")
    builder = RouterBench(config=config or "5shot", data_dir=data_dir or None)
    try:
        source = builder.as_data_source(split="full")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"tfds:{spec}: not prepared or unreadable ({e})") from None
    rows = sorted((source[i] for i in range(len(source))), key=lambda r: int(r["index"]))
    if not rows:
        raise DataError(f"tfds:{spec}: the dataset is empty")
    models = builder.info.metadata.get("models")
    if not models:
        raise DataError(f"tfds:{spec}: metadata has no model list")
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    feats = np.stack([r["features"] for r in rows])
    return RoutingData(
        quality=np.stack([r["quality"] for r in rows]),
        cost=np.stack([r["cost"] for r in rows]),
        models=list(models),
        tasks=[text(r["eval_name"]) for r in rows],
        sample_ids=[text(r["sample_id"]) for r in rows],
        prompts=[text(r["prompt"]) for r in rows],
        features=feats if feats.shape[1] else None,
        source=f"tfds:{spec}",
    )


def read_tfds(path: str, *, drop_incomplete: bool = False) -> RoutingData:
    """The ``tfds`` entry of ``jaxroute.data.READERS`` (``tfds:NAME/CONFIG[@DATA_DIR]``)."""
    del drop_incomplete  # a prepared dataset is complete
    return load_tfds(str(path).removeprefix("tfds:"))


__all__ = ["RouterBench", "load_tfds", "prepare", "read_tfds"]
