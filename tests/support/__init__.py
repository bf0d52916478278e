"""Helpers the tests share, imported as ``tests.support.<module>`` (fixtures live in the conftest.py files).

- ``files``: the repository's files as the tests read them (ROOT, events/, template.yaml, a handler's app.py);
- ``aws``: boto3 clients for the local stack's endpoint;
- ``fakes``: in-memory stand-ins for the clients the fanout code is handed (unit tests);
- ``world``: the fetcher over an in-memory source and the real sinks over fakes (unit tests);
- ``dead_letters``, ``log_events``: sample dead-letter records and CloudWatch Logs events (unit tests);
- ``integration``, ``backfill``, ``fault_injection``: the fetch path, backfill and faults on real parts;
- ``e2e``: waiting for and comparing rows on the deployed local stack.
"""
