-- The demo's source table: stands in for a table of the application's own
-- database (fanout never creates source tables in production).
CREATE TABLE IF NOT EXISTS posts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    title VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    author VARCHAR(100) NOT NULL,
    status ENUM('draft', 'published') NOT NULL DEFAULT 'draft',
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- A second source table with a composite string key. Its collation is the
-- case-insensitive default on purpose: 'Acme' and 'acme' are one key to MySQL
-- but two values, and the sinks are keyed by the value stored.
CREATE TABLE IF NOT EXISTS tenant_settings (
    tenant VARCHAR(64) NOT NULL,
    setting_key VARCHAR(191) NOT NULL,
    value JSON NOT NULL,
    description TEXT NULL,
    secret_hash VARBINARY(32) NULL,
    revision INT UNSIGNED NOT NULL DEFAULT 1,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant, setting_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
