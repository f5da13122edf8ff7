"""Running the shards: the coordinator, the worker pool, the worker process and the shard run."""
