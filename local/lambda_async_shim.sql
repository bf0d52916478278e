-- Local stand-in for Aurora MySQL's native lambda_async(function_arn, payload).
-- Installed by the local tooling only, never by a migration.
--
-- Aurora invokes the function asynchronously from inside the statement, before
-- COMMIT, and a ROLLBACK does not undo the invoke. The shim reproduces exactly
-- that: it appends to a NON-transactional table (Aria, TRANSACTIONAL=0), so the
-- row is visible to the bridge at once and survives ROLLBACK. The bridge
-- (local/bridge.py) turns each row into a Lambda Invoke (InvocationType=Event).
CREATE TABLE IF NOT EXISTS fanout_lambda_async_outbox (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    function_arn VARCHAR(512) NOT NULL,
    payload LONGTEXT NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = Aria TRANSACTIONAL = 0 DEFAULT CHARSET = utf8mb4;

-- A session may set @fanout_shim_fail = 1 to make the shim fail as an
-- unreachable Lambda endpoint makes the native function fail (tests use it).
--
-- Aurora makes the call synchronously, inside the statement: about 35 ms a call is
-- the only published figure. A session may set @fanout_shim_delay_ms (the benchmark
-- sets 35) to spend that long in each call, so the per-row design is measured at
-- Aurora's cost rather than at the cost of a local INSERT. Unset: no delay.
CREATE OR REPLACE FUNCTION lambda_async(function_arn VARCHAR(512), payload LONGTEXT)
RETURNS VARCHAR(64)
NOT DETERMINISTIC
MODIFIES SQL DATA
BEGIN
    IF @fanout_shim_fail = 1 THEN
        SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'lambda_async shim: invoke failed (simulated)';
    END IF;
    IF COALESCE(@fanout_shim_delay_ms, 0) > 0 THEN
        DO SLEEP(@fanout_shim_delay_ms / 1000);
    END IF;
    INSERT INTO fanout_lambda_async_outbox (function_arn, payload) VALUES (function_arn, payload);
    RETURN 'queued';
END;
