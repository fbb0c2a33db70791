"""The WHIP (RFC 9725) side shared by the third-party publisher scripts: messages, the
POST of the offer and the DELETE of the session, over plain urllib. The WebRTC side is
each script's own stack.

A script sets `whip.NAME` (the prefix of its messages) before calling anything here.
"""

import sys
import urllib.error
import urllib.parse
import urllib.request

NAME = "publisher"
STEP_TIMEOUT = 10.0

# No proxy: the gateway is on loopback.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fail(msg):
    print(f"{NAME}: error: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(f"{NAME}: {msg}", file=sys.stderr)


def _send(request):
    """Returns (status, headers, body); any HTTP error or socket error fails the script."""
    try:
        with _HTTP.open(request, timeout=STEP_TIMEOUT) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        fail(f"{request.method} {request.full_url}: HTTP {e.code}: "
             f"{e.read().decode(errors='replace')}")
    except OSError as e:
        fail(f"{request.method} {request.full_url}: {e}")


def post_offer(url, sdp):
    """POSTs the offer; returns (session URL, answer SDP). RFC 9725 §4.2: 201 with the
    answer and a Location, which may be relative to the endpoint URL."""
    request = urllib.request.Request(
        url, data=sdp.encode(), method="POST", headers={"Content-Type": "application/sdp"})
    status, headers, answer = _send(request)
    location = headers.get("Location")
    if status != 201 or not location:
        fail(f"POST {url}: expected 201 with Location, got {status} (Location: {location})")
    session = urllib.parse.urljoin(url, location)
    log(f"201 Created, session {session}")
    log("answer:\n" + answer)
    return session, answer


def delete(session, seconds):
    """DELETEs the session (RFC 9725 §4.2), after `seconds` of publishing."""
    status, _, _ = _send(urllib.request.Request(session, method="DELETE"))
    if not 200 <= status < 300:
        fail(f"DELETE {session}: HTTP {status}")
    log(f"DELETE {session}: {status}; published {seconds:g} s")
