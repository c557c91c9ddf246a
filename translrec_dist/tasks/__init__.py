"""Tasks: what a run trains (``cfg.task``). ``base``: the roles a task plays (training, export adapter, scorer);
``registry``: the tasks by name, built-ins included. This ``__init__`` imports nothing (no import circles)."""
