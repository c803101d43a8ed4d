"""Broker I/O: embedded broker, clients, codecs + schemas at the edge, topics, output sender."""
