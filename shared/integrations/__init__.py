"""Clients for services outside this process."""
