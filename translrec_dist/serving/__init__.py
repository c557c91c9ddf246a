"""Serving top-K recommendations from an export: ``Recommender.from_pretrained(final)`` loads any export that
recommends (a retrieval bi-encoder: ``recommender.py``; a sequential model: ``sequential.py``)."""

from translrec_dist.serving.recommender import Recommender, read_new_items
from translrec_dist.serving.sequential import SequentialRecommender

__all__ = ["Recommender", "SequentialRecommender", "read_new_items"]
