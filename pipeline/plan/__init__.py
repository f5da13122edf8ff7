"""`pipeline plan`: the figures, the probe and the report."""
