"""fanout: replicate Aurora MySQL row changes into OpenSearch and DynamoDB.

Data path: trigger SQL (db/migrations) -> parser handler (parser_fn/app.py,
fanout.parser) -> change model (fanout.change) -> fetcher handler
(fetcher_fn/app.py, fanout.fetcher, fanout.source_reader) -> sinks
(fanout.sinks.opensearch_sink, fanout.sinks.dynamodb_sink).
"""

__version__ = "0.1.0"
