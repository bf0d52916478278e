"""Rows by the thousand in one statement: the integers of a range as a table to INSERT ... SELECT from."""

from __future__ import annotations


def numbers(first: int, last: int) -> str:
    """The integers ``first``..``last`` as a derived table with one column, ``seq`` (give it an alias):
    ``INSERT INTO t (id) SELECT seq FROM {numbers(1, 5000)} s``.

    A recursive CTE that counts one by one recurses once a row, and MySQL stops it at
    ``cte_max_recursion_depth`` (1000 by default). This one numbers a binary tree instead (1; then 2n and
    2n + 1 of each n), so it recurses once per doubling: 20 levels for a million rows, and no session setting
    to remember.
    """
    count = int(last) - int(first) + 1
    return (
        "(WITH RECURSIVE tree (n) AS (SELECT 1 UNION ALL "
        f"SELECT 2 * n FROM tree WHERE 2 * n <= {count} UNION ALL "
        f"SELECT 2 * n + 1 FROM tree WHERE 2 * n + 1 <= {count}) "
        f"SELECT n + {int(first) - 1} AS seq FROM tree WHERE n <= {count})"
    )
