"""Run configuration: YAML -> typed pydantic sections, dotted overrides, validation before any work.

Every error names the key, the file it came from and what to do, e.g.
``train.lr: expected a number, got 'fast' (configs/x.yaml). Fix the value or override it: train.lr=...``.

- ``schema.py``: the sections (field types, defaults, checks within the config);
- ``loader.py``: YAML reading (duplicate keys refused), dotted overrides, dump and export;
- ``messages.py``: pydantic's errors turned into the messages above;

Checks that read files or the environment live in ``translrec_dist.training.preflight``; checks that depend on
the task belong to the task (``translrec_dist.tasks``, called at the end of ``load_config``). Apart from that
call, this package imports nothing from the rest of translrec_dist except ``errors``.
"""

from translrec_dist.config.loader import apply_override, dump_config, export_config, load_config, parse_yaml
from translrec_dist.config.schema import (
    DataConfig,
    EvalConfig,
    IndexConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    SequenceConfig,
    SyntheticConfig,
    TinyBertConfig,
    TrainConfig,
    higher_is_better,
)

__all__ = [
    "DataConfig", "EvalConfig", "IndexConfig", "LoraConfig", "ModelConfig", "RunConfig", "SequenceConfig",
    "SyntheticConfig", "TinyBertConfig", "TrainConfig", "apply_override", "dump_config", "export_config",
    "higher_is_better", "load_config", "parse_yaml",
]
