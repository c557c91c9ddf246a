"""Models of the sequential task: the SASRec-style model (``model``), its item tower, causal blocks, the
restricted catalog softmax, and the trainable item encoder."""
