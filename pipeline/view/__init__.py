"""What a person sees: progress events and stats, the live view, `status`."""
