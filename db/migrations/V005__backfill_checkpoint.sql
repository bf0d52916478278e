-- V005: where `fanout backfill` keeps its place, so a crashed or timed-out backfill resumes.
-- Written by hand (it is not a trigger migration). One row per backfill job: the job's
-- definition (table, key range, filter) and the last primary key copied, as a JSON array in
-- key order. The backfill reads and writes this row only; it never locks the replicated tables
-- through it. InnoDB, so a checkpoint is durable once its page's sink writes are done.
CREATE TABLE IF NOT EXISTS fanout_backfill_checkpoint (
    job_id VARCHAR(191) NOT NULL,
    source_table VARCHAR(64) NOT NULL,
    job_definition JSON NOT NULL,
    last_key JSON NULL,
    rows_done BIGINT UNSIGNED NOT NULL DEFAULT 0,
    pages_done BIGINT UNSIGNED NOT NULL DEFAULT 0,
    job_status VARCHAR(16) NOT NULL DEFAULT 'running',
    started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    finished_at TIMESTAMP(6) NULL,
    PRIMARY KEY (job_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
