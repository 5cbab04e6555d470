"""Online tracking of STMask (imports stmask_d2.layers only)."""
