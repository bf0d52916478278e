"""A composite string key in a change-log row: a case-only key change is a key change."""

from __future__ import annotations

from fanout.model.mapping import default_mappings
from fanout.model.payloads import parse_change_message, parse_trigger_payload
from tests.support.fakes import load_event

MAPPINGS = default_mappings()


def test_a_case_only_change_of_a_composite_string_key_yields_the_new_and_the_old_key() -> None:
    # Given what the update trigger logs when only the case of setting_key changed
    # (one key to the case-insensitive collation, two different values to the sinks)
    # When the drainer reads it
    batch = parse_trigger_payload(load_event("update_composite_key.json"), MAPPINGS, "req-c")

    # Then both keys go on to the fetcher: the new one to write, the old one to delete
    assert [c.key for c in batch] == [
        (("tenant", "acme/Ünï"), ("setting_key", "Locale")),
        (("tenant", "acme/Ünï"), ("setting_key", "locale")),
    ]
    assert [c.document_id for c in batch] == ["acme%2F%C3%9Cn%C3%AF|Locale", "acme%2F%C3%9Cn%C3%AF|locale"]
    # and each survives the hand-over to the fetcher unchanged
    assert [parse_change_message(c.to_message(), MAPPINGS) for c in batch] == batch
