"""Serving top-K recommendations from an export: ``recommender.Recommender`` over the export's task scorer
(``tasks.base.Scorer``), ``vector_index`` (exact or faiss search), ``http`` (``translrec serve``)."""
