"""Web demo: a page that draws what you type, and a JSON API with micro-batching (FastAPI + uvicorn).

    python generate.py --serve --run runs/demo/00001-demo-flowers-minilm      # http://127.0.0.1:8000/

cli.py (options, start-up) → engine.py (the run: G, cache, encoder) → batcher.py (bounded queue, one TF thread)
→ app.py (routes) with limits.py (the request models and their bounds), json_api.py (body reading, one-line
errors), png.py (fast PNG) and static/ (the page, no CDN).

The embedding service (`python precompute_embeddings.py --serve --cache FILE`, docs/embedding_service.md) reuses
batcher.py, limits.py and json_api.py: embed_cli.py → embed_engine.py (the cache and its encoder) → embed_app.py.
"""
