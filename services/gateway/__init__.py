"""The HTTP gateway (FastAPI): the public face of carbonx (see shared API.md)."""
