"""Run configuration: YAML -> typed pydantic sections, dotted overrides, validation before any work.

Every error names the key, the file it came from and what to do, e.g.
``train.lr: expected a number, got 'fast' (configs/x.yaml). Fix the value or override it: train.lr=...``.

- ``schema.py``: the sections (field types, defaults, checks within the config);
- ``loader.py``: YAML reading (duplicate keys refused), dotted overrides, dump and export;
- ``messages.py``: pydantic's errors turned into the messages above.

Loading is pure: nothing of tasks, models or training is imported. Checks that read files or the environment
live in ``translrec_dist.training.preflight``; checks that depend on the task belong to the task and run where
the program is assembled (``translrec_dist.program``). This ``__init__`` imports nothing: a package that
re-exports its submodules would sit in an import circle with each of them (see tests/test_import_graph.py).
"""
