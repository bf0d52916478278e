"""Dead letters: the queue's record formats (records), the operator's filters (selection), the SQS queue read
without consuming it (queue), synchronous invokes (invoke) and replaying records through the normal path (redrive)."""
