"""The ASGI app (``nurture serve``): /events, link and open tracking, bounces, the dashboard and provider callbacks."""
