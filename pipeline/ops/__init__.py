"""Operating a long run: control from other terminals, notifications, metrics, status file."""
