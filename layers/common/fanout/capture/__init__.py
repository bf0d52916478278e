"""Capture on the source database: trigger SQL, migrations, Aurora setup, the change log drainer, the sweeper."""
