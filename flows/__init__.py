"""Prefect flows wrapping the library's stages (the library works without Prefect)."""
