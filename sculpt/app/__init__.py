"""sculpt.app: the composition root (``wiring``), the loop and the HTTP API sit here, above every layer."""
