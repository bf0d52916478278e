"""A change via a composed document's relation rebuilds a bounded number of pages of roots per invocation and hands
the rest on as a continuation (fanout.pipeline.related), carrying a resume cursor that is validated on entry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from fanout.deadline import NO_DEADLINE, Pace, TimeLeft
from fanout.model.change import Change, ChangeValidationError
from fanout.model.mapping import TableMapping, default_mappings
from fanout.model.payloads import fetcher_event, parse_change_message
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.related import FanOut, apply_related
from fanout.source.reader import RowState
from tests.support.fakes import CallbackQueue, FakeContext, FakeSQSClient, RecordingQueue, RecordingReject
from tests.support.world import fetcher_handler

MAPPINGS = default_mappings()  # the bundled mapping: "articles" is composed, "author" its parent relation
TS = 1_764_240_000_000_000
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/fetch"


def via_author(author: int, after: int | None = None) -> Change:
    cursor = (("id", after),) if after is not None else ()
    return Change("articles", (("id", author),), "update", TS, "req", via="author", after=cursor)


class Roots:
    """The articles of each author, as root_page reads them: keyset pages on the root key, counted."""

    def __init__(self, **articles_of: Sequence[int]) -> None:
        self.articles_of = {int(author.removeprefix("author")): sorted(ids) for author, ids in articles_of.items()}
        self.pages_read = 0

    def read_rows(
        self, mapping: TableMapping, changes: Sequence[Change], *, deadline: Any = None
    ) -> list[RowState | Exception]:
        return [RowState(None, 1) for _ in changes]  # the roots' rows are not what these tests look at

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        self.pages_read += 1
        after = change.after[0][1] if change.after else None
        ids = [i for i in self.articles_of.get(int(change.key[0][1]), []) if after is None or i > int(after)]
        return [Change("articles", (("id", i),), "update", change.changed_at_us, change.correlation_id)
                for i in ids[:page_size]]  # fmt: skip


class Invocation:
    """One fetcher invocation's fan-out: roots rebuilt, failures, what was handed on."""

    def __init__(self, fan_out: FanOut, failing_roots: Sequence[int] = ()) -> None:
        self.fan_out = fan_out
        self.failing_roots = set(failing_roots)
        self.rebuilt: list[int] = []
        self.failed_keys: set[Any] = set()
        self.failures: list[str] = []

    def apply_roots(self, page: list[Change]) -> None:
        for root in page:
            self.rebuilt.append(int(root.key[0][1]))
            if root.key[0][1] in self.failing_roots:
                self.failed_keys.add((root.table, root.key))

    def run(self, *changes: Change, deadline: TimeLeft = NO_DEADLINE, pace: Pace | None = None) -> Invocation:
        apply_related(
            changes, MAPPINGS, self.fan_out, self.apply_roots, self.failed_keys, self.failures, deadline=deadline,
            pace=pace,
        )  # fmt: skip
        return self


class TimeRunsOut:
    """A deadline of 10 s per page in ``pages``: each page rebuilt spends 10 s (``spend``)."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def left(self) -> float:
        return 10.0 * self.pages

    def spend(self, page: list[Change]) -> None:
        self.pages -= 1


def deliver_until_done(first: Change, roots: Roots, pages: int, page_size: int) -> tuple[list[int], int]:
    """Every root rebuilt by delivering the change, then each continuation it hands on, as the queue would."""
    pending, rebuilt, invocations = [first], [], 0
    while pending:
        forward = RecordingQueue()
        before = roots.pages_read
        done = Invocation(FanOut(roots, forward, pages=pages, page_size=page_size)).run(pending.pop())
        assert roots.pages_read - before <= pages  # bounded work per invocation
        assert not done.failures
        rebuilt += done.rebuilt
        pending += [change for batch in forward.batches for change in batch]
        invocations += 1
    return rebuilt, invocations


def test_a_parent_with_more_roots_than_the_budget_rebuilds_the_first_pages_and_hands_the_rest_on() -> None:
    # Given an author of 11 articles, and a budget of 2 pages of 3 roots an invocation
    roots = Roots(author7=range(1, 12))
    forward = RecordingQueue()

    # When the author's change is applied
    done = Invocation(FanOut(roots, forward, pages=2, page_size=3)).run(via_author(7))

    # Then the first 6 roots are rebuilt, and the same change goes on, resuming after the last of them
    assert done.rebuilt == [1, 2, 3, 4, 5, 6] and not done.failures
    assert forward.batches == [[via_author(7, after=6)]]


def test_delivering_the_continuations_rebuilds_every_root_once_in_bounded_invocations() -> None:
    roots = Roots(author7=range(1, 12))
    rebuilt, invocations = deliver_until_done(via_author(7), roots, pages=2, page_size=3)
    assert rebuilt == list(range(1, 12))
    assert invocations == 2


def test_a_fan_out_within_the_budget_hands_nothing_on() -> None:
    forward = RecordingQueue()
    done = Invocation(FanOut(Roots(author7=range(1, 6)), forward, pages=2, page_size=3)).run(via_author(7))
    assert done.rebuilt == [1, 2, 3, 4, 5] and forward.batches == []


def test_a_fan_out_ending_exactly_on_the_budget_hands_nothing_on() -> None:
    # each page read asks for one root more, which says whether another page follows
    forward = RecordingQueue()
    done = Invocation(FanOut(Roots(author7=range(1, 7)), forward, pages=2, page_size=3)).run(via_author(7))
    assert done.rebuilt == [1, 2, 3, 4, 5, 6] and forward.batches == []


def test_the_budget_is_shared_by_every_change_via_a_relation_of_the_invocation() -> None:
    # Given two authors' changes in one invocation of one page
    roots = Roots(author7=range(1, 5), author8=range(10, 12))
    forward = RecordingQueue()

    # When both are applied
    done = Invocation(FanOut(roots, forward, pages=1, page_size=3)).run(via_author(7), via_author(8))

    # Then the first change's page spends the budget: both go on, each from where it stands
    assert done.rebuilt == [1, 2, 3] and roots.pages_read == 1
    assert forward.batches == [[via_author(7, after=3)], [via_author(8)]]


def test_a_fan_out_whose_time_runs_out_hands_the_rest_on_before_its_page_budget_is_spent() -> None:
    # Given a budget of 4 pages of 3 roots, 20 s left and a page taking 10 s: after the first page, 10 s is
    # not more than the next one may need
    forward = RecordingQueue()
    time_left = TimeRunsOut(pages=2)
    done = Invocation(FanOut(Roots(author7=range(1, 12)), forward, pages=4, page_size=3))
    rebuild = done.apply_roots

    def apply_roots(page: list[Change]) -> None:
        rebuild(page)
        time_left.spend(page)

    done.apply_roots = apply_roots  # type: ignore[method-assign]

    # When the author's change is applied
    done.run(via_author(7), deadline=time_left, pace=Pace(floor_seconds=10.0))

    # Then the pages that fit are rebuilt and the rest goes on as a continuation, not as a failure
    assert done.rebuilt == [1, 2, 3] and not done.failures
    assert forward.batches == [[via_author(7, after=3)]]


def test_without_a_queue_to_hand_on_to_every_page_is_rebuilt_whatever_the_time() -> None:
    # maintenance and the CLI: no continuations, no budget; a root that did not fit fails in the fetcher instead
    done = Invocation(FanOut(Roots(author7=range(1, 12)), None, pages=1, page_size=3))
    done.run(via_author(7), deadline=TimeRunsOut(pages=0), pace=Pace(floor_seconds=10.0))
    assert done.rebuilt == list(range(1, 12)) and not done.failures


def test_a_continuation_resumes_after_its_cursor() -> None:
    forward = RecordingQueue()
    done = Invocation(FanOut(Roots(author7=range(1, 12)), forward, pages=1, page_size=3)).run(via_author(7, after=6))
    assert done.rebuilt == [7, 8, 9] and forward.batches == [[via_author(7, after=9)]]


def test_a_continuation_that_cannot_be_handed_on_fails_the_change_so_it_is_retried_from_its_own_cursor() -> None:
    # Given a forwarder that fails
    def unreachable(changes: Sequence[Change]) -> None:
        raise RuntimeError("the fetch queue is unreachable")

    # When a change with more roots than the budget is applied
    done = Invocation(FanOut(Roots(author7=range(1, 12)), CallbackQueue(unreachable), pages=1, page_size=3)).run(
        via_author(7, 3)
    )

    # Then the change fails (its retry starts again after root 3: nothing is dropped)
    assert done.rebuilt == [4, 5, 6]
    assert ("articles", (("id", 7),)) in done.failed_keys
    assert done.failures == ["articles/author/7: handing on its continuation failed: the fetch queue is unreachable"]


def test_a_failed_root_fails_the_change_and_hands_no_continuation_on() -> None:
    # its retry covers the rest; a continuation as well would rebuild every later root twice per retry
    forward = RecordingQueue()
    done = Invocation(FanOut(Roots(author7=range(1, 12)), forward, pages=2, page_size=3), failing_roots=[2])
    done.run(via_author(7))
    assert done.rebuilt == [1, 2, 3, 4, 5, 6]
    assert done.failures == ["articles/author/7: 1 of its root documents failed"]
    assert ("articles", (("id", 7),)) in done.failed_keys and forward.batches == []


def test_without_a_forwarder_every_page_is_rebuilt_in_one_call() -> None:
    # maintenance, the CLI and tools: no timeout to stay inside, nowhere to hand a continuation
    roots = Roots(author7=range(1, 12))
    done = Invocation(FanOut(roots, pages=1, page_size=3)).run(via_author(7))
    assert done.rebuilt == list(range(1, 12)) and roots.pages_read == 4


def test_a_fan_out_needs_a_page_of_at_least_one_root() -> None:
    with pytest.raises(ValueError, match="at least one page"):
        FanOut(Roots(), RecordingQueue(), pages=0)
    with pytest.raises(ValueError, match="at least one root"):
        FanOut(Roots(), RecordingQueue(), page_size=0)


# --------------------------------------------------------------------------- the message


def test_a_continuation_travels_in_the_change_message_and_a_message_without_a_cursor_starts_at_the_first_root() -> None:
    continuation = via_author(7, after=6)
    message = continuation.to_message()
    assert message["after"] == {"id": 6}
    assert parse_change_message(json.loads(json.dumps(message)), MAPPINGS) == continuation

    without = via_author(7).to_message()
    assert "after" not in without  # the message of a change from the start is the one written before cursors
    assert parse_change_message(without, MAPPINGS).after == ()


@pytest.mark.parametrize(
    ("after", "via", "field", "reason"),
    [
        ({"id": 6}, "", "after", "only a change via a relation can carry a resume cursor"),
        (6, "author", "after", "must be an object of key columns"),
        ({"author_id": 6}, "author", "after", "must have exactly the key columns ['id'] of 'articles'"),
        ({"id": "6"}, "author", "after.id", "must be an integer"),
        ({"id": 2**64}, "author", "after.id", "integer is out of the BIGINT range"),
        (None, "author", "after", "must be an object of key columns"),
    ],
)
def test_a_malformed_resume_cursor_is_rejected_naming_the_field_and_the_reason(
    after: Any, via: str, field: str, reason: str
) -> None:
    message = Change("articles", (("id", 7),), "update", TS, via=via).to_message() | {"after": after}
    with pytest.raises(ChangeValidationError) as caught:
        parse_change_message(message, MAPPINGS)
    assert (caught.value.field, caught.value.reason) == (field, reason)


# --------------------------------------------------------------------------- through the hand-off


def queued_batch(roots: Roots, forward: QueueForwarder, *changes: Change, pages: int, page_size: int) -> dict[str, Any]:
    event = {"Records": [{"messageId": "m0", "receiptHandle": "r0", "body": json.dumps(fetcher_event(changes)),
                          "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]}  # fmt: skip
    fetcher = Fetcher(
        MAPPINGS, roots, [], reject=RecordingReject(), continuations=forward, pages=pages, page_size=page_size
    )
    return fetcher_handler(fetcher)(event, FakeContext())


def test_queued_a_continuation_goes_back_to_the_fetch_queue_and_the_record_is_done() -> None:
    sqs = FakeSQSClient()
    answer = queued_batch(Roots(author7=range(1, 12)), QueueForwarder(sqs, QUEUE), via_author(7), pages=1, page_size=3)
    assert answer == {"batchItemFailures": []}
    (body,) = sqs.bodies()
    assert [parse_change_message(m, MAPPINGS) for m in body["changes"]] == [via_author(7, after=3)]


def test_queued_a_continuation_the_queue_refuses_makes_the_record_retried() -> None:
    sqs = FakeSQSClient()
    sqs.refuse = lambda body: [c.get("after") for c in body["changes"]] == [{"id": 3}]
    answer = queued_batch(Roots(author7=range(1, 12)), QueueForwarder(sqs, QUEUE), via_author(7), pages=1, page_size=3)
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}]
