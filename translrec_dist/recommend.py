"""The Python API's ``Recommender``: serving's Recommender plus ``from_pretrained``, which has the program
(``translrec_dist.program``) build it over the scorer of the export's task. Serving itself never asks which
task made an export, so the constructor that does lives up here, beside the program."""

from __future__ import annotations

from pathlib import Path

from translrec_dist.serving.recommender import Recommender as ServingRecommender


class Recommender(ServingRecommender):
    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | None = None, index: bool = True,
                        trust_remote_code: bool = False) -> Recommender:
        """An export that recommends (task retrieval or sequential), with its saved index (or the catalog
        encoded now); ``trust_remote_code`` is the user's choice, never the export's own config."""
        from translrec_dist.program import load_recommender

        return load_recommender(model_dir, device, index, trust_remote_code, cls=cls)
