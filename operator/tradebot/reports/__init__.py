"""Reports of recorded runs: what was run, on which data and code, with which results.

`model` holds the report's shape and how it is assembled from records (pure), `collect` reads
the records, `render` writes Markdown or JSON (pure), `since` parses `--since`.
"""
