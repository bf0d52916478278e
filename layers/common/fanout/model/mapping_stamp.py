"""The bundled mapping checked against its schema when the layer is built, so that a cold start need not be.

The layer's build (layers/common/Makefile) runs ``python -m fanout.model.mapping_stamp <layer>/fanout/tables.json``:
it loads the mapping as a function does (the schema check, then the typed parse: a bad mapping fails the build)
and writes its stamp beside it (``tables.json.sha256``, :func:`fanout.model.mapping_schema.schema_digest`): the
digest of the mapping's bytes and of the schema they passed. :func:`fanout.model.mapping.load_mappings` skips the
schema check of a file whose stamp matches (the same bytes, checked by the same schema) and checks any other in
full: a ``FANOUT_MAPPING_FILE``, an edited copy, a layer built without the stamp.

The trade: jsonschema's import and a schema check at each cold start (about a tenth of the fetcher's, before its
first batch: bench/results/cold_import.md) for one check at build time. The typed parse, which checks what the
schema cannot (key columns, shared tables, key formats), still runs at every cold start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fanout.model.mapping import MappingError, load_mappings
from fanout.model.mapping_schema import schema_digest, stamp_path


def main(argv: list[str]) -> int:
    """Check the mapping file named (in full) and write its stamp; a bad mapping is one line on stderr, exit 1."""
    if len(argv) != 2:
        print("usage: python -m fanout.model.mapping_stamp <tables.json>", file=sys.stderr)
        return 2
    path = Path(argv[1])
    stamp_path(path).unlink(missing_ok=True)  # checked in full, never by an older stamp
    try:
        load_mappings(path)
    except MappingError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    stamp_path(path).write_text(schema_digest(path.read_bytes()) + "\n", encoding="ascii")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
