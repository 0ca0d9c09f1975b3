"""Logs the Host of every request the app receives (one line on stderr),
so a test can prove which tenants' requests reached Django at all."""
import sys


def log_requests(get_response):
    def middleware(request):
        print(f"django saw host={request.get_host()} path={request.path}", file=sys.stderr, flush=True)
        return get_response(request)

    return middleware
