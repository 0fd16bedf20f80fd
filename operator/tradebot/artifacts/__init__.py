"""Run artifacts that outlive their Job: where they are kept (a PersistentVolumeClaim or an
S3-compatible bucket, chosen in settings), how a run's files get there, and how a recorded
artifact is fetched back and checked against its sha256 (docs/artifacts.md).

    from tradebot.artifacts import store
    record = store.put(run_id, Path("out/result.zip"))   # an ArtifactRecord whose path resolves
"""
