"""`cnnlab serve`: a trained run behind an HTTP API and a web page.

- config: ServeConfig, the command's options, checked (light: no web framework imported);
- service: decoding uploads and predicting under a lock, framework-free;
- views: edge-filter and Grad-CAM pictures for the page, as PNG data URLs;
- limits: the ASGI middleware that refuses oversized bodies with 413 before reading them;
- app: the FastAPI routes; server: uvicorn, started on the configured host and port;
- page.html: the self-contained page served at /.
"""
