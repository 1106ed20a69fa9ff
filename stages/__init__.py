"""COVID-Net CXR-S pipeline: one module per DVC stage, shared code in sub-packages."""
