"""The CardGenius API as the pipeline speaks it.

Request and answer shapes, the HTTP client, the endpoint (mock or real).
"""
