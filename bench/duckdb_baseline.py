#!/usr/bin/env python3
"""DuckDB's own NDJSON -> zstd Parquet on the same input, as the yardstick.

usage: duckdb_baseline.py IN.ndjson OUT.parquet THREADS
"""
import sys
import duckdb

src, dst, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(
    "COPY (SELECT * FROM read_json(?, format = 'newline_delimited')) TO '%s' (FORMAT parquet, COMPRESSION zstd)"
    % dst.replace("'", "''"),
    [src],
)
