"""Evaluation: metrics (pure functions), full-catalog ranking, and evaluating or scoring with an export."""
