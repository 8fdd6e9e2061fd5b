"""Who is asking (identity) and what they may do (access filters, per-type rules)."""
