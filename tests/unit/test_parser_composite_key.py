"""A composite string key through the parser: a case-only key change is a key change."""

from __future__ import annotations

from fanout.model.mapping import default_mappings
from fanout.model.payloads import parse_change_message
from fanout.pipeline.parser import handle_trigger_payload
from tests.support.fakes import RecordingForward, RecordingReject, load_event

MAPPINGS = default_mappings()


def test_a_case_only_change_of_a_composite_string_key_yields_the_new_and_the_old_key() -> None:
    # Given what the update trigger sends when only the case of setting_key changed
    # (one key to the case-insensitive collation, two different values to the sinks)
    forward, reject = RecordingForward(), RecordingReject()

    # When
    result = handle_trigger_payload(load_event("update_composite_key.json"), MAPPINGS, forward, reject, "req-c")

    # Then both keys go on to the fetcher: the new one to write, the old one to delete
    assert result.as_dict() == {"accepted": 2, "rejected": 0, "reason": ""}
    [batch] = forward.batches
    assert [c.key for c in batch] == [
        (("tenant", "acme/Ünï"), ("setting_key", "Locale")),
        (("tenant", "acme/Ünï"), ("setting_key", "locale")),
    ]
    assert [c.document_id for c in batch] == ["acme%2F%C3%9Cn%C3%AF|Locale", "acme%2F%C3%9Cn%C3%AF|locale"]
    # and each survives the hand-over to the fetcher unchanged
    assert [parse_change_message(c.to_message(), MAPPINGS) for c in batch] == batch
    assert reject.rejections == []
