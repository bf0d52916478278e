"""Reading the source database: connections, the locking re-read, value typing."""
