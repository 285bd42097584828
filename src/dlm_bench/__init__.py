"""dlm-bench: latency, throughput, memory and quality of masked diffusion vs autoregressive LMs."""
