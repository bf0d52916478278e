"""Helpers the tests share, imported as ``tests.support.<module>`` (fixtures live in the conftest.py files).

- ``files``: the repository's files as the tests read them (ROOT, events/, template.yaml, a handler's app.py);
- ``aws``: boto3 clients for the local stack's endpoint;
- ``fakes``: in-memory stand-ins for the clients the fanout code is handed (unit tests);
- ``world``: the fetcher over an in-memory source and the real sinks over fakes (unit tests);
- ``dead_letters``, ``log_events``: sample dead-letter records and CloudWatch Logs events (unit tests);
- ``integration``, ``backfill``, ``fault_injection``: the fetch path, backfill and faults on real parts;
- ``waiting``: ``wait_until``, the one poll loop the tests share;
- ``e2e``: the deployed local stack as one typed ``Stack`` (the e2e tests' fixture), and comparing rows on it.
"""
