"""`imagexplore serve`: every capability on one web page and a JSON API (FastAPI + uvicorn).

`app.create_app(Settings(...))` builds the ASGI app; `hub.Hub` holds the models (loaded once, lazily, shared) and
the bounded worker pool; `routes/` has one small module per panel; `static/` is the page. See docs/serve.md.
Nothing here is imported by `imagexplore --help`: the command line loads it only when `serve` runs.
"""
