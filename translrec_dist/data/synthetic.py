"""A seeded synthetic recommendation dataset, so the main job needs no download.

Users have latent tastes over item categories; items carry text built from their category's words;
interactions are drawn from the tastes. A model that reads the history and the candidate's text can
learn "does the candidate's category show up in this history", so a trained model clearly beats chance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from translrec_dist.config.schema import SyntheticConfig


CATEGORIES = {
    "jazz": "saxophone trumpet swing bebop club improvisation smoky blues quartet",
    "scifi": "spaceship galaxy robot alien future laser planet android starship",
    "cooking": "recipe kitchen spice oven pasta baking chef flavor garlic",
    "travel": "journey island mountain passport beach hotel adventure map coast",
    "history": "empire war ancient king medieval revolution dynasty castle treaty",
    "fitness": "workout running muscle yoga strength cardio marathon stretch gym",
    "poetry": "verse sonnet rhyme lyric stanza muse ballad metaphor elegy",
    "finance": "market stock invest budget bank savings dividend crypto loan",
    "horror": "ghost haunted zombie vampire scream curse shadow nightmare crypt",
    "gardening": "flower soil seed compost tomato rose garden pruning bloom",
    "comedy": "laugh joke parody sitcom prank standup satire witty farce",
    "sports": "football soccer league goal coach stadium tennis season champion",
}
FILLER = "the a great new classic story guide collection edition volume series life world".split()


def generate_synthetic(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (interactions, items) in the interactions format: user_id, item_id, rating, timestamp."""
    rng = np.random.default_rng(cfg.seed)
    names = list(CATEGORIES)
    n_cat = cfg.num_categories
    cat_names = [names[c % len(names)] + ("" if c < len(names) else str(c // len(names))) for c in range(n_cat)]

    item_cat = rng.integers(0, n_cat, size=cfg.num_items)
    titles, descs = [], []
    for i, c in enumerate(item_cat):
        words = CATEGORIES[names[c % len(names)]].split()
        picked = rng.choice(words, size=3, replace=False)
        titles.append(f"{rng.choice(FILLER).title()} {picked[0].title()} {picked[1].title()} {i}")
        descs.append(f"A {rng.choice(FILLER)} {picked[2]} {rng.choice(FILLER)}")
    items = pd.DataFrame({"item_id": np.arange(cfg.num_items), "title": titles,
                          "category": [cat_names[c] for c in item_cat], "description": descs})

    # Each user loves one or two categories and explores a little.
    tastes = np.zeros((cfg.num_users, n_cat))
    for u in range(cfg.num_users):
        favorites = rng.choice(n_cat, size=min(n_cat, int(rng.integers(1, 3))), replace=False)
        tastes[u, favorites] = rng.dirichlet(np.ones(len(favorites)))
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_cat)]
    rows = []
    for u in range(cfg.num_users):
        t = 1_000_000 + int(rng.integers(0, 10_000))
        seen: set[int] = set()
        for _ in range(cfg.interactions_per_user):
            explore = rng.random() < 0.15
            c = int(rng.integers(0, n_cat)) if explore else int(rng.choice(n_cat, p=tastes[u]))
            pool = [i for i in by_cat[c] if i not in seen] or [i for i in range(cfg.num_items) if i not in seen]
            if not pool:
                break
            item = int(rng.choice(pool))
            seen.add(item)
            liked = tastes[u, c] > 0.2
            rating = int(np.clip(rng.normal(4.3 if liked else 2.2, 0.7), 1, 5).round())
            t += int(rng.integers(0, 3)) * 60  # gaps of 0 make equal timestamps: the split must keep file order
            rows.append((u, item, rating, t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return inter, items
