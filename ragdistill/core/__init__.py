"""What every pipeline shares: I/O, the MTEB format, resumable outputs, the CLI, errors, hardware, reports,
plots, metrics, the vLLM engine, training helpers, and the contract every pipeline fulfils (pipeline). It imports
no pipeline package."""
