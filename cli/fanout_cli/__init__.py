"""The operator command line, ``fanout``: installed with the project (``pip install -e .``), never shipped in the
Lambda layer, so it may use libraries the functions do not need (click, tqdm).

main (the command group), commands/ (one module per command), dead letters, replication status, the stack's
resource names, the Aurora setup script, and operator_text (outside text escaped before it is printed).
"""
