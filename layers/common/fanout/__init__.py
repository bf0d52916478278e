"""fanout: replicate Aurora MySQL row changes into OpenSearch and DynamoDB.

Data path (docs/architecture.md, "One change, trigger to sinks"): trigger SQL (db/migrations)
-> parser handler (parser_fn/app.py, fanout.capture.change_log) -> change model
(fanout.model.change) -> fetch queue (fanout.pipeline.fetch_queue, both ends) -> fetcher handler
(fetcher_fn/app.py, fanout.pipeline.fetcher.Fetcher, fanout.source.reader) -> sinks
(fanout.sinks.opensearch, fanout.sinks.dynamodb).
"""

__version__ = "0.1.0"
