"""Source readers, one module per family of formats; ``source.read_source`` picks one for ``data.format``."""
