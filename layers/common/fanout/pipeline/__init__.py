"""The live data path between capture and sinks: the parser, the hand-off to the fetcher, the fetcher, rejects,
and the one wiring of the fetch path from the environment."""
