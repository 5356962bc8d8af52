"""Small Kafka helpers shared by the edge, the worker and the tools."""
