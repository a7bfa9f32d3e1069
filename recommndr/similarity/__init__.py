"""Item-to-item models: similar items (ALS cosine) and frequently bought together (co-purchase)."""
