"""Online features: the Feast definitions (shared with the streaming job) and the request path's
compact reader/writer of the same online-store records."""
