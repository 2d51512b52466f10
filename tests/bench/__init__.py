"""Client-server benchmarks of Hexagone side by side with Synapse (see README.md)."""
