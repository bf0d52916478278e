"""Capture on the source database: trigger SQL, migrations, the change log drainer and the sweeper."""
