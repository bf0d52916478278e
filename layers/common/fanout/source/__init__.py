"""Reading the source database: connections, the re-read, value typing, keyset pages, quoting, user-level locks."""
