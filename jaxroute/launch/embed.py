r"""Embeds the prompts of a routing dataset with the Flax sentence encoder.

Writes float32 ``[N, D]`` features to ``--output`` (.npy) and the sample ids, in the
same order, to the ``.ids`` file beside it; fills the feature cache so a second run (or
the training app) reads from disk::

    python -m jaxroute.launch.embed \
        --data_path=/path/to/routerbench_5shot_subset --output=/tmp/rb5.npy

The output loads back with ``jaxroute.encoders.load_features(path, sample_ids=...)``.
"""

from absl import app, flags, logging

from jaxroute import encoders
from jaxroute.launch import common  # --data_path, --data_format (shared by the apps)

_OUTPUT = flags.DEFINE_string("output", None, "Output .npy ([N, D] float32).")
_ENCODER = flags.DEFINE_string(
    "encoder", None, "A name of jaxroute.encoders.ENCODERS or an HF-format folder."
)
_ENCODER_DIR = flags.DEFINE_string(
    "encoder_dir", None, "HF-format encoder folder (default: installed all-MiniLM-L6-v2)."
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", encoders.DEFAULT_CACHE_DIR, "Feature cache folder ('' disables the cache)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", encoders.DEFAULT_BATCH_SIZE, "Rows per batch.")
_DTYPE = flags.DEFINE_enum(
    "encoder_dtype",
    "auto",
    list(encoders.ENCODER_DTYPES),
    "Encoder matmuls: float32, bfloat16 (float32 accumulation), or auto (bfloat16 on a "
    "CPU with AMX-BF16 or AVX512-BF16, else float32; the encoder table's default where "
    "it sets one, e.g. all-mpnet-base-v2: float32).",
)
_VIEW = flags.DEFINE_enum(
    "prompt_view", "full", list(encoders.PROMPT_VIEWS), "Which part of each prompt to embed."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not common.DATA_PATH.value or not _OUTPUT.value:
        raise app.UsageError("--data_path and --output are required")
    data = common.load_data_or_exit()
    if _VIEW.value != "full" and data.prompts is not None:
        data = data.replace(prompts=encoders.apply_view(data.prompts.tolist(), _VIEW.value))
    logging.info("loaded %d prompts from %s", len(data.sample_ids), common.DATA_PATH.value)
    features = encoders.features_for(
        data,
        encoder_dir=_ENCODER.value or _ENCODER_DIR.value,
        cache_dir=_CACHE_DIR.value or None,
        batch_size=_BATCH_SIZE.value,
        encoder_dtype=encoders.encoder_dtype(_ENCODER.value or _ENCODER_DIR.value, _DTYPE.value),
    )
    encoders.write_features(_OUTPUT.value, features, data.sample_ids)
    logging.info(
        "wrote %s %s and %s", _OUTPUT.value, features.shape, encoders.ids_path(_OUTPUT.value)
    )


if __name__ == "__main__":
    common.run(main)
