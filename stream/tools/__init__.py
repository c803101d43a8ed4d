"""Operator tools: publisher, tail, demo, parity."""
