"""Models of the mlm task: a masked language model for domain-adaptive pretraining."""
