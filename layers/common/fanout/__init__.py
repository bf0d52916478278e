"""fanout: replicate Aurora MySQL row changes into OpenSearch and DynamoDB.

Data path: trigger SQL (db/migrations) -> parser handler (parser_fn/app.py,
fanout.pipeline.parser) -> change model (fanout.model.change) -> fetcher handler
(fetcher_fn/app.py, fanout.pipeline.fetcher, fanout.source.reader) -> sinks
(fanout.sinks.opensearch, fanout.sinks.dynamodb).
"""

__version__ = "0.1.0"
