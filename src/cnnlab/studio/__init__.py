"""`cnnlab studio`: the whole workflow in a browser on the user's own machine, over the library.

- config: StudioConfig, the command's options, checked (light: no web framework imported);
- guard: the ASGI middleware that refuses requests without the token, from foreign Host names,
  and state-changing requests a foreign web page could send (no custom header);
- folders: the only way a request names a file: runs by name under --runs, photos by their
  place in --data's survey (path traversal has nothing to resolve);
- jobs: the training queue, one worker process at a time, stop and resume;
- worker: what runs inside that process (prepare, train, evaluate through cnnlab.workflow);
- data_view, run_views, inspect_view: the JSON (and thumbnails) behind each tab of the page;
- app: the FastAPI routes; server: uvicorn on the configured host and port;
- page.html and studio.js: the self-contained page (no build step, no CDN, works offline).
"""
