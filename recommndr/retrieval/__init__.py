"""First stage: candidate retrieval (ALS with its index, recency-weighted popularity) and the
contract every retriever follows. Co-purchase neighbours are in ``similarity``; the three are merged
into the ranker's candidate set in ``ranking/candidates.py``."""
