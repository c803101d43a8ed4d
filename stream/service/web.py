"""A minimal /health view for the split mode's workers (aiohttp)."""

from __future__ import annotations

from aiohttp import web


async def serve_health(bind: str, port: int, status) -> web.AppRunner:
    async def health(request):
        return web.json_response({"status": "ok", **status()})

    wapp = web.Application()
    wapp.router.add_get("/health", health)
    runner = web.AppRunner(wapp, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    return runner
