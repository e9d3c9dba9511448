"""All file and URL I/O of the project, through fsspec (local paths, memory://, s3://).

The library, tasks and flows open nothing themselves (tests/test_layering.py checks it).
Modules: fs (URL resolution, reading and listing), atomic (the one atomic-write mechanism:
temp file, fsync, rename), exclusive (create-if-absent), file_lock, shard_writer (tar shards),
manifest (parquet per shard), dataset_index (dataset.json, completion markers, resume checks),
readers (WebDataset pipeline and parquet vector reader), checkpoints, torch_files (torch and
TorchScript files), download (resumable verified HTTP download of weights), digests.
Import the submodules directly; this package imports nothing heavy on its own.
"""
