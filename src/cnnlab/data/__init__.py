"""The data pipeline: find photos and their labels, survey them, split them, decode them once
into a memory-mapped cache that training streams from."""
