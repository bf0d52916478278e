"""The change model: what a trigger says changed, the table mapping, and how keys become sink keys."""
