"""MovieLens in its own distribution formats: ml-100k, ml-1m, and ml-latest / ml-latest-small.

``read_movielens`` detects which one a directory holds from its files. Items get ``title``, ``genres``
(comma-separated names) and, where the release has them, ``release_date`` (100k) or ``tags`` (latest:
the movie's user tags, most frequent first).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from translrec_dist.data.readers.files import read_delimited
from translrec_dist.data.readers.rows import BadRows
from translrec_dist.errors import DataError

# ml-100k's u.genre, in flag order, for copies that lack that file.
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
LAYOUTS = {"ml-100k": ("u.data", "u.item"), "ml-1m": ("ratings.dat", "movies.dat"),
           "ml-latest": ("ratings.csv", "movies.csv")}


def detect_movielens(directory: Path) -> str:
    for name, files in LAYOUTS.items():
        if all((directory / f).is_file() for f in files):
            return name
    expected = "; ".join(f"{k}: {' + '.join(v)}" for k, v in LAYOUTS.items())
    raise DataError(f"{directory}: not a MovieLens directory (expected {expected})")


def read_movielens(directory: str | Path, bad: BadRows):
    """(interactions, items, files read) in raw form for ``normalize.finish``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data.path={directory} is not a directory (data.format=movielens wants the unpacked "
                        f"ml-100k / ml-1m / ml-latest folder)")
    kind = detect_movielens(directory)
    reader = {"ml-100k": read_ml100k, "ml-1m": read_ml1m, "ml-latest": read_ml_latest}[kind]
    return reader(directory, bad)


def read_ml100k(directory: Path, bad: BadRows):
    inter = read_delimited(directory / "u.data", "\t", bad, columns=RATING_COLUMNS, encoding="latin-1")
    genres = GENRES_100K
    if (directory / "u.genre").is_file():
        table = read_delimited(directory / "u.genre", "|", BadRows(1.0), columns=["name", "index"],
                               encoding="latin-1")
        genres = table.sort_values("index", key=lambda s: s.astype(int))["name"].tolist()
    columns = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
    raw = read_delimited(directory / "u.item", "|", bad, columns=columns, encoding="latin-1")
    flags = raw[genres].to_numpy() == "1"
    items = pd.DataFrame({"item_id": raw["item_id"], "title": raw["title"],
                          "genres": [", ".join(g for g, on in zip(genres, row, strict=True) if on) for row in flags],
                          "release_date": raw["release_date"], "_line": raw["_line"]})
    return inter, items, [directory / "u.data", directory / "u.item"]


def read_ml1m(directory: Path, bad: BadRows):
    inter = read_delimited(directory / "ratings.dat", "::", bad, columns=RATING_COLUMNS, encoding="latin-1")
    items = read_delimited(directory / "movies.dat", "::", bad, columns=["item_id", "title", "genres"],
                           encoding="latin-1")
    items["genres"] = items["genres"].str.replace("|", ", ", regex=False)
    return inter, items, [directory / "ratings.dat", directory / "movies.dat"]


def read_ml_latest(directory: Path, bad: BadRows):
    inter = read_delimited(directory / "ratings.csv", ",", bad, quoted=True)
    inter = inter.rename(columns={"userId": "user_id", "movieId": "item_id"})
    items = read_delimited(directory / "movies.csv", ",", bad, quoted=True).rename(columns={"movieId": "item_id"})
    items["genres"] = items["genres"].str.replace("|", ", ", regex=False)
    files = [directory / "ratings.csv", directory / "movies.csv"]
    if (directory / "tags.csv").is_file():
        tags = read_delimited(directory / "tags.csv", ",", bad, quoted=True)
        tags["tag"] = tags["tag"].str.strip().str.lower()
        counts = tags[tags["tag"] != ""].groupby(["movieId", "tag"]).size().rename("n").reset_index()
        counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True], kind="stable")
        joined = counts.groupby("movieId")["tag"].agg(", ".join)
        items["tags"] = items["item_id"].map(joined).fillna("")
        files.append(directory / "tags.csv")
    return inter, items, files
