"""Training: batches streamed from the cache, a resumable run folder, and the Keras loop."""
