-- Capture INSERT, UPDATE and DELETE on `posts` and hand each change to the parser.
--
-- Each trigger sends a small payload built with JSON_OBJECT (never CONCAT: it
-- breaks on quotes and unicode): format version, action, table, primary key as
-- an object, and the change time as seconds since the epoch with microseconds
-- (UNIX_TIMESTAMP(SYSDATE(6)) does not depend on the session time zone). The
-- UPDATE trigger also sends the old key, so a primary-key change deletes the old
-- row from the sinks. The row itself is never sent: the fetcher re-reads it.
--
-- ${parser_function_arn} is substituted by the migration runner at apply time.
-- On Aurora MySQL 3, lambda_async is native (the cluster needs the Aurora invoke
-- role and the AWS_LAMBDA_ACCESS grant); locally a shim stands in for it.

DROP TRIGGER IF EXISTS fanout_posts_after_insert;

CREATE TRIGGER fanout_posts_after_insert AFTER INSERT ON posts FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'insert', 'table', 'posts',
            'pk', JSON_OBJECT('id', NEW.id),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;

DROP TRIGGER IF EXISTS fanout_posts_after_update;

CREATE TRIGGER fanout_posts_after_update AFTER UPDATE ON posts FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'update', 'table', 'posts',
            'pk', JSON_OBJECT('id', NEW.id),
            'old_pk', JSON_OBJECT('id', OLD.id),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;

DROP TRIGGER IF EXISTS fanout_posts_after_delete;

CREATE TRIGGER fanout_posts_after_delete AFTER DELETE ON posts FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'delete', 'table', 'posts',
            'pk', JSON_OBJECT('id', OLD.id),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;
