"""Model compression: structured pruning and int8 quantization of toolkit checkpoints."""
