"""Pydantic models: the API contract and task payloads."""
