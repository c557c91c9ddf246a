"""Data stages: read source -> text examples -> tokenizer -> tokenized splits (``stages``); loaders live in
``loader``, source readers in ``readers``. Import the submodules directly: this ``__init__`` imports nothing, so
that no submodule sits in an import circle with its package."""
