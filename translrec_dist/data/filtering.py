"""Filtering before the split: k-core, so every kept user and item has at least k interactions."""

from __future__ import annotations

import logging

import pandas as pd

from translrec_dist.errors import DataError

log = logging.getLogger(__name__)


def kcore(inter: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than ``k`` interactions, repeated until none is left (a true k-core:
    removing an item can push a user below k)."""
    if k <= 1:
        return inter
    before, rounds = len(inter), 0
    users_before, items_before = inter["user_id"].nunique(), inter["item_id"].nunique()
    most_user = int(inter["user_id"].value_counts().max()) if before else 0
    most_item = int(inter["item_id"].value_counts().max()) if before else 0
    while True:
        rounds += 1
        users = inter["user_id"].map(inter["user_id"].value_counts())
        items = inter["item_id"].map(inter["item_id"].value_counts())
        keep = (users >= k) & (items >= k)
        if keep.all():
            break
        inter = inter[keep.to_numpy()]
    if inter.empty:
        raise DataError(f"data.kcore={k} removed all {before} interactions ({users_before} users, {items_before} "
                        f"items; the most active user has {most_user}, the most popular item {most_item}): no user "
                        f"and item reach {k} interactions together. Lower data.kcore")
    log.info("%d-core: kept %d of %d interactions (%d users, %d items) after %d rounds", k, len(inter), before,
             inter["user_id"].nunique(), inter["item_id"].nunique(), rounds)
    return inter.reset_index(drop=True)
