"""The front door of the webhook-down drill: it answers every webhook POST with 503, as a broken
proxy or deploy would. (The drill's journal is `standins.journal.ThreadedJournal`.)"""

from __future__ import annotations

from standins.server import LoopbackServer, QuietHandler


class Down(LoopbackServer):
    """Answers every POST 503 after reading its body. Serves from the start."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.start()
