"""Call the CardGenius API once per user: sharded, rate-limited, resumable, merged to Excel."""

__version__ = "0.1.0"
