"""The change model: what a trigger says changed, the table mapping, key formats, how keys become sink keys."""
