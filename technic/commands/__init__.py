"""Implementations behind the CLI commands (kept out of cli.py, which only parses)."""
