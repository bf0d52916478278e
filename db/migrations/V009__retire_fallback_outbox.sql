-- V009: the fallback outbox of the per-row capture triggers (V003, V004) is retired.
-- Written by hand (it is not a trigger migration). Since V006 no trigger writes the table: a
-- failed ring leaves the change in fanout_change_log, which the sweeper's ring drains, and this
-- release no longer sweeps the outbox. So a deploy must not go on while a parked change waits
-- there: this statement then fails (ERROR 1242, "Subquery returns more than 1 row") and the
-- deploy with it. Drain it with the previous release's `fanout sweep`, run
-- `fanout migrate --repair`, and deploy again (docs/migrations.md, "The retired fallback outbox").
--
-- The empty table is not dropped here: DROP is a privilege the migrating account does not hold
-- (docs/security.md), and a grant on the table alone cannot exist before V003 creates it on a new
-- database. An administrator drops it: DROP TABLE IF EXISTS fanout_fallback_outbox.
SET @fanout_fallback_outbox_is_empty = (
    SELECT 'empty'
    UNION ALL
    (
        SELECT 'a parked change still waits: drain it first' FROM fanout_fallback_outbox
        ORDER BY id
        LIMIT 1
    )
);
