"""Commands of ``fanout``: one module per command, each wiring options to the code that does the work."""
