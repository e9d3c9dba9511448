"""Per-sample attributes of a dataset (mask class shares, head pose, zero-shot FaRL scores).

A source is one module with a SOURCE (spec.AttributeSource); registry.py lists them. The run
(run.py) computes every chosen source shard by shard and stores the values beside the dataset
(layout in storage/attributes.py).
"""
