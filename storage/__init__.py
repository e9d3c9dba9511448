"""All dataset and checkpoint I/O, through fsspec (local paths, memory://, s3://).

Modules: fs (URL resolution), atomic (temp-file-then-rename writes), shard_writer (tar
shards), manifest (parquet per shard), dataset_index (dataset.json, completion markers,
resume checks), readers (WebDataset pipeline and parquet vector reader), checkpoints.
Import the submodules directly; this package imports nothing heavy on its own.
"""
