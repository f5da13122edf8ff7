"""The run folder: its layout, atomic writes, checkpoints, run.json, the answer store."""
