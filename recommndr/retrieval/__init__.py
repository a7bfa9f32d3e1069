"""First stage: candidate retrieval (ALS, recency-weighted popularity, co-purchase)."""
