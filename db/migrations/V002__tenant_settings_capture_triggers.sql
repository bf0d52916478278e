-- Capture INSERT, UPDATE and DELETE on `tenant_settings` and hand each change to the parser.
--
-- Each trigger sends a small payload built with JSON_OBJECT (never CONCAT: it
-- breaks on quotes and unicode): format version, action, table, primary key as
-- an object (here the composite string key tenant + setting_key), and the change
-- time as seconds since the epoch with microseconds (UNIX_TIMESTAMP(SYSDATE(6))
-- does not depend on the session time zone). The UPDATE trigger also sends the
-- old key, so a primary-key change deletes the old row from the sinks. The row
-- itself is never sent: the fetcher re-reads it.
--
-- ${parser_function_arn} is substituted by the migration runner at apply time.
-- On Aurora MySQL 3, lambda_async is native (the cluster needs the Aurora invoke
-- role and the AWS_LAMBDA_ACCESS grant); locally a shim stands in for it.

DROP TRIGGER IF EXISTS fanout_tenant_settings_after_insert;

CREATE TRIGGER fanout_tenant_settings_after_insert AFTER INSERT ON tenant_settings FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'insert', 'table', 'tenant_settings',
            'pk', JSON_OBJECT('tenant', NEW.tenant, 'setting_key', NEW.setting_key),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;

DROP TRIGGER IF EXISTS fanout_tenant_settings_after_update;

CREATE TRIGGER fanout_tenant_settings_after_update AFTER UPDATE ON tenant_settings FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'update', 'table', 'tenant_settings',
            'pk', JSON_OBJECT('tenant', NEW.tenant, 'setting_key', NEW.setting_key),
            'old_pk', JSON_OBJECT('tenant', OLD.tenant, 'setting_key', OLD.setting_key),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;

DROP TRIGGER IF EXISTS fanout_tenant_settings_after_delete;

CREATE TRIGGER fanout_tenant_settings_after_delete AFTER DELETE ON tenant_settings FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'delete', 'table', 'tenant_settings',
            'pk', JSON_OBJECT('tenant', OLD.tenant, 'setting_key', OLD.setting_key),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END;
