"""Models of the retrieval task: the bi-encoder (user and item towers)."""
