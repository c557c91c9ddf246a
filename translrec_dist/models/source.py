"""Where a run's encoder and tokenizer come from, decided once for every module that builds or sizes them."""

from __future__ import annotations

from typing import Literal

Source = Literal["tiny", "pretrained", "export"]


def model_source(cfg) -> tuple[Source, str | None]:
    """``("export", model.init_from)``: a translrec export to start from; ``("tiny", None)``: a random-init BERT
    from ``model.tiny`` with a WordPiece vocabulary trained on the data; ``("pretrained", model.name_or_path)``."""
    m = cfg.model
    if m.init_from:
        return "export", m.init_from
    if m.tiny is not None:
        return "tiny", None
    return "pretrained", m.name_or_path
