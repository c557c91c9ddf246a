"""translrec-dist: fine-tune pretrained language encoders into recommenders, from one CPU to many GPUs."""

__version__ = "0.1.0"
