"""edit-dataset: a folder of photos or a synth-data dataset, edited by a YAML spec, into shards."""
