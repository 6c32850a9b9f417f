"""Web demo: a page that draws what you type, and a JSON API with micro-batching (FastAPI + uvicorn).

    python generate.py --serve --run runs/demo/00001-synthetic-flowers-minilm      # http://127.0.0.1:8000/

cli.py (options, start-up) → engine.py (the run: G, cache, encoder) → batcher.py (bounded queue, one TF thread)
→ app.py (routes, errors) with limits.py (request checks), png.py (fast PNG) and static/ (the page, no CDN).
"""
