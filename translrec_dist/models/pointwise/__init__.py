"""Models of the pointwise tasks (ctr, rating): the cross-encoder."""
